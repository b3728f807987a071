"""``train --resume`` after SIGKILL ends with the model of an uninterrupted run."""

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from sentiment_lstm.cli import main
from sentiment_lstm.training import load_checkpoint
from tests.conftest import NEGATIVE_REVIEWS, POSITIVE_REVIEWS, default_signals

NUM_EPOCHS = 4
TRAIN_ARGS = [
    "--num-epochs",
    str(NUM_EPOCHS),
    "--patience",
    "0",
    "--batch-size",
    "4",
    "--learning-rate",
    "0.003",
    "--lstm-units",
    "16",
    "--embedding-size",
    "16",
    "--architecture",
    "bi",
    "--embedding-dropout",
    "0.1",
    "--optimizer",
    "adamw",
    "--weight-decay",
    "0.01",
    "--lr-schedule",
    "cosine",
    "--warmup-fraction",
    "0.1",
    "--seed",
    "5",
]


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """600 reviews, so that one epoch takes a noticeable time."""
    rng = np.random.default_rng(0)
    lines = {"pos": [], "neg": []}
    for suffix, reviews in (("pos", POSITIVE_REVIEWS), ("neg", NEGATIVE_REVIEWS)):
        for _ in range(300):
            words = " ".join(reviews[int(rng.integers(len(reviews)))].split()[:6])
            lines[suffix].append(f"{words} {int(rng.integers(1000))}")
        (tmp_path / f"corpus.{suffix}").write_text("\n".join(lines[suffix]) + "\n")
    return tmp_path / "corpus.pos"


# One thread keeps the runs fast on a busy machine and their arithmetic equal.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def train_args(data: Path, output_dir: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--data",
        str(data),
        "--output-dir",
        str(output_dir),
        *TRAIN_ARGS,
        *extra,
    ]


def train_command(data: Path, output_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "sentiment_lstm",
        "-q",
        *train_args(data, output_dir, *extra),
    ]


def epochs_without_time(model_dir: Path) -> list[dict]:
    history = json.loads((model_dir / "metrics.json").read_text())
    return [
        {key: value for key, value in epoch.items() if key != "seconds"}
        for epoch in history["epochs"]
    ]


def wait_for_checkpoint(process: subprocess.Popen, checkpoint: Path) -> None:
    """Wait up to 120 s for a training process to write its first checkpoint."""
    deadline = time.monotonic() + 120
    while not checkpoint.exists():
        if process.poll() is not None:
            pytest.fail(f"training ended (status {process.returncode}) first")
        if time.monotonic() > deadline:
            pytest.fail("no checkpoint appeared within 120 s")
        time.sleep(0.01)


def kill_after_first_checkpoint(command: list[str], checkpoint: Path) -> None:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, env=ENV)
    try:
        wait_for_checkpoint(process, checkpoint)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()


def test_resume_matches_uninterrupted(corpus, tmp_path):
    whole = tmp_path / "whole"
    resumed = tmp_path / "resumed"
    subprocess.run(train_command(corpus, whole), check=True, env=ENV)

    kill_after_first_checkpoint(
        train_command(corpus, resumed), resumed / "checkpoint.pt"
    )
    interrupted_after = load_checkpoint(resumed / "checkpoint.pt")["epoch"]
    subprocess.run(train_command(corpus, resumed, "--resume"), check=True, env=ENV)

    assert 1 <= interrupted_after < NUM_EPOCHS
    assert epochs_without_time(resumed) == epochs_without_time(whole)
    whole_weights = load_file(str(whole / "model.safetensors"))
    resumed_weights = load_file(str(resumed / "model.safetensors"))
    assert sorted(resumed_weights) == sorted(whole_weights)
    for name, array in whole_weights.items():
        assert np.array_equal(resumed_weights[name], array), name
    assert not (resumed / "checkpoint.pt").exists()


def test_resume_lower_threshold_matches_straight(corpus, tmp_path):
    whole = tmp_path / "whole"
    resumed = tmp_path / "resumed"
    # A learning rate this small keeps validation accuracy far below 1.0.
    slow = ["--learning-rate", "1e-9"]
    subprocess.run(train_command(corpus, whole, *slow), check=True, env=ENV)
    kill_after_first_checkpoint(
        train_command(corpus, resumed, *slow, "--required-acc-checkpoint", "1.0"),
        resumed / "checkpoint.pt",
    )
    assert not (resumed / "model.safetensors").exists()

    subprocess.run(
        train_command(corpus, resumed, *slow, "--required-acc-checkpoint", "0")
        + ["--resume"],
        check=True,
        env=ENV,
    )

    assert epochs_without_time(resumed) == epochs_without_time(whole)
    assert (resumed / "model.safetensors").read_bytes() == (
        whole / "model.safetensors"
    ).read_bytes()
    assert not (resumed / "checkpoint.pt").exists()


def test_resume_with_overwrite_rejected(corpus, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(train_args(corpus, tmp_path / "run", "--resume", "--overwrite"))

    assert exit_info.value.code == 2
    assert (
        "--resume continues the interrupted run and --overwrite starts a new one; "
        "pass only one of them" in capsys.readouterr().err
    )
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("saved", "extra", "expected"),
    [
        ("checkpoint-member0.pt", (), "trained an ensemble; resume with the"),
        (
            "checkpoint.pt",
            ("--ensemble-size", "2"),
            "trained a single network; resume without --ensemble-size",
        ),
    ],
)
def test_resume_with_other_ensemble_size_named(
    corpus, tmp_path, capsys, saved, extra, expected
):
    output_dir = tmp_path / "run"
    output_dir.mkdir()
    (output_dir / saved).write_bytes(b"")

    status = main(train_args(corpus, output_dir, "--resume", *extra))

    assert status == 1
    assert expected in capsys.readouterr().err


def test_resume_without_checkpoint_fails(corpus, tmp_path, capsys, caplog):
    caplog.set_level("INFO")
    status = main(train_args(corpus, tmp_path / "fresh", "--resume"))

    assert status == 1
    assert "no checkpoint to resume" in capsys.readouterr().err
    # the check runs before the data is read, and creates no folder
    assert "reading" not in caplog.text
    assert not (tmp_path / "fresh").exists()


def interrupt_when(
    command: list[str], ready, signal_number: int = signal.SIGINT
) -> tuple[int, str]:
    """Start command, send the signal once ready() is true; return status and stderr."""
    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=ENV,
        text=True,
        preexec_fn=default_signals,
    )
    deadline = time.monotonic() + 120
    try:
        while not ready():
            if process.poll() is not None:
                pytest.fail(f"training ended (status {process.returncode}) first")
            if time.monotonic() > deadline:
                pytest.fail("the run did not get ready within 120 s")
            time.sleep(0.01)
        os.kill(process.pid, signal_number)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, stderr


def test_interrupt_before_first_epoch(corpus, tmp_path):
    output_dir = tmp_path / "new" / "model"

    # the folder is created and checked before the data is read
    status, stderr = interrupt_when(
        train_command(corpus, output_dir), output_dir.exists
    )

    assert status == 130
    assert stderr.strip().endswith(
        "interrupted before the first epoch finished; no model was saved"
    )
    # both folders were created by the run and left empty
    assert not (tmp_path / "new").exists()


def test_interrupt_during_model_save_resumable(corpus, tmp_path, monkeypatch, capsys):
    # Ctrl-C while epoch 1's model is written waits for its checkpoint too.
    from sentiment_lstm import artifact

    real_save = artifact.save_artifact

    def save_then_interrupt(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        return real_save(*args, **kwargs)

    monkeypatch.setattr(artifact, "save_artifact", save_then_interrupt)
    output_dir = tmp_path / "run"

    status = main(train_args(corpus, output_dir))
    stderr = capsys.readouterr().err

    assert status == 130
    assert "interrupted after epoch 1 finished; the model of epoch 1 is saved" in (
        stderr
    )
    assert "--resume" in stderr
    assert (output_dir / "checkpoint.pt").is_file()
    assert (output_dir / "model.safetensors").is_file()


def test_sigterm_during_model_save_resumable_with_sigint_ignored(
    corpus, tmp_path, monkeypatch, capsys
):
    # A shell without job control starts "train ... &" with SIGINT ignored;
    # SIGTERM while epoch 1's model is written still waits for its checkpoint.
    from sentiment_lstm import artifact

    real_save = artifact.save_artifact

    def save_then_terminate(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return real_save(*args, **kwargs)

    monkeypatch.setattr(artifact, "save_artifact", save_then_terminate)
    output_dir = tmp_path / "run"
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        status = main(train_args(corpus, output_dir))
    finally:
        signal.signal(signal.SIGINT, previous)
    stderr = capsys.readouterr().err

    assert status == 128 + signal.SIGTERM
    assert "interrupted after epoch 1 finished; the model of epoch 1 is saved" in (
        stderr
    )
    assert (output_dir / "checkpoint.pt").is_file()
    assert (output_dir / "model.safetensors").is_file()


@pytest.mark.parametrize("ensemble", [False, True])
def test_sigterm_at_the_end_says_model_saved(
    corpus, tmp_path, monkeypatch, capsys, ensemble
):
    from sentiment_lstm import pipeline

    remove_checkpoints = pipeline.remove_checkpoints

    def terminate_then_remove(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return remove_checkpoints(*args, **kwargs)

    monkeypatch.setattr(pipeline, "remove_checkpoints", terminate_then_remove)
    output_dir = tmp_path / "run"
    extra = ["--ensemble-size", "2"] if ensemble else []

    status = main(train_args(corpus, output_dir, *extra))
    last_line = capsys.readouterr().err.strip().splitlines()[-1]

    assert status == 128 + signal.SIGTERM
    if ensemble:
        assert last_line == (
            f"interrupted after training finished; the model is saved in {output_dir}"
        )
    else:
        assert last_line.startswith(
            "interrupted after training finished; the model of epoch "
        )
    assert (output_dir / "model.safetensors").is_file()
    assert not list(output_dir.glob("checkpoint*.pt"))


def test_interrupt_after_checkpoint_says_how_to_resume(corpus, tmp_path):
    output_dir = tmp_path / "run"
    checkpoint = output_dir / "checkpoint.pt"

    status, stderr = interrupt_when(
        train_command(corpus, output_dir), checkpoint.exists
    )

    assert status == 130
    assert re.search(
        rf"interrupted( after epoch \d finished)?; the model of epoch \d is saved "
        rf"in {re.escape(str(output_dir))}; to continue, repeat the command with "
        rf"--resume, which starts from {re.escape(str(checkpoint))}$",
        stderr.strip(),
    ), stderr
    assert "Traceback" not in stderr
    assert checkpoint.is_file()
    assert (output_dir / "model.safetensors").is_file()
    resumed = subprocess.run(
        train_command(corpus, output_dir, "--resume"), env=ENV, capture_output=True
    )
    assert resumed.returncode == 0
    assert not checkpoint.exists()


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_before_first_epoch_removes_folder(corpus, tmp_path, signal_number):
    # SIGHUP comes when the terminal closes.
    output_dir = tmp_path / "new" / "model"

    status, stderr = interrupt_when(
        train_command(corpus, output_dir), output_dir.exists, signal_number
    )

    assert status == 128 + signal_number
    assert stderr.strip().endswith(
        "interrupted before the first epoch finished; no model was saved"
    )
    assert not (tmp_path / "new").exists()


def test_second_run_into_a_busy_folder_fails(corpus, tmp_path, capsys):
    output_dir = tmp_path / "run"
    checkpoint = output_dir / "checkpoint.pt"
    first = subprocess.Popen(
        train_command(corpus, output_dir, "--num-epochs", "200"),
        stdout=subprocess.DEVNULL,
        env=ENV,
    )
    try:
        wait_for_checkpoint(first, checkpoint)
        for flag in ("--overwrite", "--resume"):
            status = main(train_args(corpus, output_dir, flag))

            assert status == 1
            assert (
                capsys.readouterr()
                .err.strip()
                .endswith(
                    f"--output-dir {output_dir} is in use by another "
                    "sentiment-lstm process, such as a train run or an export; "
                    "wait for it to finish, or choose another --output-dir"
                )
            )
        assert first.poll() is None
    finally:
        first.kill()
        first.wait()

    # the lock went with the process that held it
    status = main(train_args(corpus, output_dir, "--overwrite"))
    assert status == 0
    assert (output_dir / "model.safetensors").is_file()


def test_sigterm_in_ensemble_names_member_and_epoch(corpus, tmp_path):
    output_dir = tmp_path / "run"
    checkpoint = output_dir / "checkpoint-member0.pt"

    status, stderr = interrupt_when(
        train_command(corpus, output_dir, "--ensemble-size", "2"),
        checkpoint.exists,
        signal.SIGTERM,
    )

    assert status == 143
    assert re.search(
        r"^interrupted after epoch \d+ of ensemble member [12] " r"finished; ",
        stderr.strip().splitlines()[-1],
    )
    assert "to continue, repeat the command with --resume" in stderr


@pytest.mark.parametrize(
    ("flags", "advice"),
    [([], "--resume, which"), (["--overwrite"], "--resume in place of --overwrite")],
)
def test_sigterm_after_checkpoint_says_how_to_resume(corpus, tmp_path, flags, advice):
    output_dir = tmp_path / "run"
    checkpoint = output_dir / "checkpoint.pt"

    status, stderr = interrupt_when(
        train_command(corpus, output_dir, *flags), checkpoint.exists, signal.SIGTERM
    )

    assert status == 143
    assert f"to continue, repeat the command with {advice}" in stderr
    assert "Traceback" not in stderr
    assert checkpoint.is_file()
    assert not [path.name for path in output_dir.iterdir() if path.name[0] == "."]


def test_resume_with_other_flags_fails(corpus, tmp_path, capsys):
    output_dir = tmp_path / "run"
    kill_after_first_checkpoint(
        train_command(corpus, output_dir), output_dir / "checkpoint.pt"
    )

    status = main(train_args(corpus, output_dir, "--resume", "--learning-rate", "0.01"))

    assert status == 1
    assert "--learning-rate was 0.003, now 0.01" in capsys.readouterr().err


@pytest.fixture
def csv_corpus(corpus: Path, tmp_path: Path) -> Path:
    """The corpus as a CSV file with a second text column, "review"."""
    path = tmp_path / "corpus.csv"
    rows = [
        [line, " ".join(reversed(line.split())), label]
        for suffix, label in (("pos", "positive"), ("neg", "negative"))
        for line in corpus.with_suffix(f".{suffix}").read_text().splitlines()
    ]
    with open(path, "w", newline="") as stream:
        csv.writer(stream).writerows([["text", "review", "label"], *rows])
    return path


def test_resume_naming_detected_columns_accepted(csv_corpus, tmp_path):
    output_dir = tmp_path / "run"
    kill_after_first_checkpoint(
        train_command(csv_corpus, output_dir), output_dir / "checkpoint.pt"
    )

    status = main(
        train_args(csv_corpus, output_dir, "--resume", "--text-column", "text")
        + ["--label-column", "label", "--skip-bad-rows"]
    )

    assert status == 0
    assert not (output_dir / "checkpoint.pt").exists()


def test_resume_from_renamed_copy_accepted(csv_corpus, tmp_path):
    output_dir = tmp_path / "run"
    kill_after_first_checkpoint(
        train_command(csv_corpus, output_dir), output_dir / "checkpoint.pt"
    )
    copy = tmp_path / "renamed" / "reviews.csv"
    copy.parent.mkdir()
    copy.write_bytes(csv_corpus.read_bytes())

    status = main(train_args(copy, output_dir, "--resume"))

    assert status == 0
    assert not (output_dir / "checkpoint.pt").exists()


def test_resume_with_other_column_names_flag(csv_corpus, tmp_path, capsys):
    output_dir = tmp_path / "run"
    kill_after_first_checkpoint(
        train_command(csv_corpus, output_dir), output_dir / "checkpoint.pt"
    )

    status = main(
        train_args(csv_corpus, output_dir, "--resume", "--text-column", "review")
    )
    error = capsys.readouterr().err

    assert status == 1
    assert (
        "reading flags changed: --text-column 'review' (training: 'text', detected)"
    ) in error
    assert "the reviews read changed" in error
    assert (output_dir / "checkpoint.pt").is_file()


def test_resume_checkpoint_without_newer_data_fields(corpus, tmp_path, caplog):
    output_dir = tmp_path / "run"
    checkpoint = output_dir / "checkpoint.pt"
    kill_after_first_checkpoint(train_command(corpus, output_dir), checkpoint)
    # what an earlier version wrote: no record of the read options, and the
    # data paths as typed
    state = load_checkpoint(checkpoint)
    data = state["identity"]["data"]
    for key in ("read_options", "examples_fingerprint", "data_files_fingerprint"):
        del data[key]
    data["files"] = ["elsewhere/corpus.pos", "elsewhere/corpus.neg"]
    torch.save(state, checkpoint)
    caplog.set_level("INFO", logger="sentiment_lstm.training")

    status = main(train_args(corpus, output_dir, "--resume"))

    assert status == 0
    assert (
        "did not record data.data_files_fingerprint, data.examples_fingerprint, "
        "data.read_options; resuming without comparing them" in caplog.text
    )
    assert (output_dir / "model.safetensors").is_file()


def test_resume_checkpoint_without_newer_fields_still_compares_others(
    corpus, tmp_path, capsys
):
    output_dir = tmp_path / "run"
    checkpoint = output_dir / "checkpoint.pt"
    kill_after_first_checkpoint(train_command(corpus, output_dir), checkpoint)
    state = load_checkpoint(checkpoint)
    del state["identity"]["data"]["read_options"]
    torch.save(state, checkpoint)

    status = main(train_args(corpus, output_dir, "--resume", "--seed", "6"))

    assert status == 1
    error = capsys.readouterr().err
    assert "--seed was 5, now 6" in error
    assert "read_options" not in error


def test_resume_with_other_max_length_fails(corpus, tmp_path, capsys):
    output_dir = tmp_path / "run"
    kill_after_first_checkpoint(
        train_command(corpus, output_dir), output_dir / "checkpoint.pt"
    )

    status = main(train_args(corpus, output_dir, "--resume", "--max-length", "3"))

    assert status == 1
    assert "--max-length was 400, now 3" in capsys.readouterr().err
    assert (output_dir / "checkpoint.pt").is_file()


def test_resume_checkpoint_without_text_encoder_section(corpus, tmp_path, caplog):
    output_dir = tmp_path / "run"
    checkpoint = output_dir / "checkpoint.pt"
    kill_after_first_checkpoint(train_command(corpus, output_dir), checkpoint)
    state = load_checkpoint(checkpoint)
    del state["identity"]["text_encoder"]
    torch.save(state, checkpoint)
    caplog.set_level("INFO", logger="sentiment_lstm.training")

    status = main(train_args(corpus, output_dir, "--resume"))

    assert status == 0
    assert "did not record text_encoder; resuming without comparing" in caplog.text


# Runs train after a Ctrl-C that arrives inside a weakref callback while
# scikit-learn is imported, where Python would drop the KeyboardInterrupt.
INTERRUPT_DURING_IMPORT = """
import os
import signal
import sys
import weakref


def interrupt(reference):
    os.kill(os.getpid(), signal.SIGINT)
    # loop iterations give Python the chance to run the SIGINT handler here
    for _ in range(10_000):
        pass


class InterruptWhileImporting:
    def find_spec(self, name, path=None, target=None):
        if name == "sklearn":
            sys.meta_path.remove(self)
            anchor = type("Anchor", (), {})()
            reference = weakref.ref(anchor, interrupt)
            del anchor
        return None


sys.meta_path.insert(0, InterruptWhileImporting())
from sentiment_lstm.cli import main

sys.exit(main(sys.argv[1:]))
"""


def test_interrupt_during_imports_stops(corpus, tmp_path):
    output_dir = tmp_path / "run"

    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            INTERRUPT_DURING_IMPORT,
            "-q",
            *train_args(corpus, output_dir),
        ],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )

    assert completed.returncode == 130, completed.stderr
    assert completed.stderr.strip().endswith(
        "interrupted before training started; nothing was written"
    ), completed.stderr
    assert "Exception ignored" not in completed.stderr
    assert not output_dir.exists()


def test_resume_keeps_earlier_model_unclaimed(corpus, tmp_path, capsys):
    output_dir = tmp_path / "run"
    subprocess.run(
        train_command(corpus, output_dir, "--num-epochs", "1"), check=True, env=ENV
    )
    earlier = {
        name: (output_dir / name).read_bytes()
        for name in ("model.safetensors", "training.json", "metrics.json")
    }
    # a learning rate this small keeps validation accuracy far below 0.99
    never_saves = ["--learning-rate", "1e-9", "--required-acc-checkpoint", "0.99"]
    kill_after_first_checkpoint(
        train_command(corpus, output_dir, *never_saves, "--overwrite"),
        output_dir / "checkpoint.pt",
    )

    status = main(train_args(corpus, output_dir, *never_saves, "--resume"))

    assert status == 1
    assert "no epoch reached the required validation accuracy" in (
        capsys.readouterr().err
    )
    for name, content in earlier.items():
        assert (output_dir / name).read_bytes() == content, name


def test_resume_refuses_changed_vectors(corpus, tmp_path, capsys):
    output_dir = tmp_path / "run"
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("great " + " ".join(["0.5"] * 16) + "\n")
    # A learning rate this small keeps validation accuracy far below 0.99, so
    # the run ends with its checkpoint and no model.
    never_saves = ["--learning-rate", "1e-9", "--required-acc-checkpoint", "0.99"]
    flags = [*never_saves, "--pretrained-vectors", str(vectors), "--num-epochs", "1"]
    assert main(train_args(corpus, output_dir, *flags)) == 1
    assert (output_dir / "checkpoint.pt").exists()
    capsys.readouterr()

    # The same vectors under another path are the same run.
    copy = tmp_path / "elsewhere" / "vectors.txt"
    copy.parent.mkdir()
    copy.write_bytes(vectors.read_bytes())
    moved = [*never_saves, "--pretrained-vectors", str(copy), "--num-epochs", "1"]
    assert main(train_args(corpus, output_dir, *moved, "--resume")) == 1
    moved_error = capsys.readouterr().err

    vectors.write_text("great " + " ".join(["-0.5"] * 16) + "\n")
    status = main(train_args(corpus, output_dir, *flags, "--resume"))

    assert "other settings" not in moved_error
    assert "no epoch reached the required validation accuracy" in moved_error
    assert status == 1
    assert (
        "the --pretrained-vectors file (its contents, or whether one was given) "
        "changed"
    ) in capsys.readouterr().err


def test_resume_with_relative_data_path(corpus, tmp_path):
    output_dir = tmp_path / "run"
    kill_after_first_checkpoint(
        train_command(corpus, output_dir), output_dir / "checkpoint.pt"
    )

    # the same files, named relative to the working folder this time
    resumed = subprocess.run(
        train_command(Path(corpus.name), output_dir, "--resume"),
        cwd=corpus.parent,
        env=ENV,
        capture_output=True,
        text=True,
    )

    assert resumed.returncode == 0, resumed.stderr
    assert not (output_dir / "checkpoint.pt").exists()
