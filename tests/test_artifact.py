import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from sentiment_lstm import artifact, interrupts
from sentiment_lstm.artifact import ArtifactConfig, ArtifactError
from sentiment_lstm.text import TextEncoder, TextEncoderConfig


@pytest.fixture
def saved(tmp_path):
    encoder = TextEncoder.build(["a good film", "a bad film"], TextEncoderConfig())
    weights = {"layer.weight": np.arange(6, dtype=np.float32).reshape(2, 3)}
    artifact.save_artifact(
        tmp_path / "model",
        config=ArtifactConfig(model={"vocab_size": 7}, labels=("negative", "positive")),
        encoder=encoder,
        weights=weights,
        metadata={"note": "test"},
    )
    return tmp_path / "model"


def test_round_trip(saved):
    config = artifact.load_config(saved)
    weights = artifact.load_weights(saved)

    assert config.model == {"vocab_size": 7}
    assert config.labels == ("negative", "positive")
    assert weights["layer.weight"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert artifact.load_metadata(saved) == {"note": "test"}
    assert artifact.load_encoder(saved).encode("good film") != []


def test_no_staging_folder_left(saved):
    assert sorted(p.name for p in saved.iterdir()) == [
        "config.json",
        "model.safetensors",
        "text_encoder.json",
        "tokenizer.json",
        "training.json",
    ]


@pytest.mark.parametrize(
    "name", ["config.json", "model.safetensors", "tokenizer.json", "training.json"]
)
def test_missing_file_is_named(saved, name):
    (saved / name).unlink()
    loaders = [
        artifact.load_config,
        artifact.load_weights,
        artifact.load_encoder,
        artifact.load_metadata,
    ]

    with pytest.raises(ArtifactError, match=name.replace(".", r"\.")):
        for load in loaders:
            load(saved)


def test_corrupt_weights_are_named(saved):
    (saved / "model.safetensors").write_bytes(b"not a safetensors file")

    with pytest.raises(ArtifactError, match=r"model\.safetensors"):
        artifact.load_weights(saved)


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_rejected(saved, bad_value):
    weights = {"layer.weight": np.arange(6, dtype=np.float32).reshape(2, 3)}
    weights["layer.weight"][1, 2] = bad_value
    save_file(weights, str(saved / "model.safetensors"))

    with pytest.raises(ArtifactError) as error:
        artifact.load_weights(saved)

    assert "'layer.weight' has 1 of 6 values NaN or infinite" in str(error.value)
    assert "model.safetensors" in str(error.value)


def test_corrupt_config_is_named(saved):
    (saved / "config.json").write_text("{broken", encoding="utf-8")

    with pytest.raises(ArtifactError, match=r"config\.json is not valid JSON"):
        artifact.load_config(saved)


def test_unknown_format_version(saved):
    values = json.loads((saved / "config.json").read_text())
    values["format_version"] = 99
    (saved / "config.json").write_text(json.dumps(values))

    with pytest.raises(ArtifactError, match="format version 99"):
        artifact.load_config(saved)


@pytest.mark.parametrize(
    "labels, num_classes",
    [
        (["bad", "good"], 2),
        (["positive", "negative"], 2),
        (["negative", "neutral", "positive"], 2),
        (["negative", "positive"], 3),
    ],
)
def test_unusable_labels(saved, labels, num_classes):
    values = json.loads((saved / "config.json").read_text())
    values["labels"] = labels
    values["model"]["num_classes"] = num_classes
    (saved / "config.json").write_text(json.dumps(values))

    with pytest.raises(ArtifactError, match=r"expected labels \['negative', 'pos"):
        artifact.load_config(saved)


def test_interrupted_run_folder_named(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"checkpoint")

    with pytest.raises(ArtifactError, match="train' run and no model") as error:
        artifact.load_config(tmp_path)

    assert "repeat its train command with --resume (and a lower" in str(error.value)


@pytest.mark.skipif(os.name == "nt", reason="needs flock")
@pytest.mark.parametrize("checkpoint", [True, False])
def test_folder_of_running_train_named(tmp_path, checkpoint):
    from sentiment_lstm.cli.train_output import output_dir_lock

    if checkpoint:
        (tmp_path / "checkpoint.pt").write_bytes(b"checkpoint")

    with output_dir_lock(tmp_path):
        with pytest.raises(ArtifactError) as error:
            artifact.load_config(tmp_path)
    with pytest.raises(ArtifactError) as after:
        artifact.load_config(tmp_path)

    assert str(error.value) == (
        f"{tmp_path} is the --output-dir of a 'sentiment-lstm train' run in "
        "progress that has not saved a model yet; wait until it saves one (after "
        "an epoch that reaches its --required-acc-checkpoint), or pass the "
        "--output-dir of a run that saved a model"
    )
    assert "in progress" not in str(after.value)


@pytest.mark.skipif(os.name == "nt", reason="needs flock")
def test_train_lock_waits_out_folder_check(tmp_path):
    import fcntl
    import threading

    from sentiment_lstm.cli.train_output import output_dir_lock

    # A folder check holds a shared lock for a moment, as folder_locked does.
    descriptor = os.open(tmp_path, os.O_RDONLY)
    fcntl.flock(descriptor, fcntl.LOCK_SH)
    release = threading.Timer(0.2, os.close, [descriptor])
    release.start()
    try:
        with output_dir_lock(tmp_path):
            locked = artifact.folder_locked(tmp_path)
    finally:
        release.join()

    assert locked
    assert not artifact.folder_locked(tmp_path)


def test_missing_directory(tmp_path):
    with pytest.raises(ArtifactError, match="not found"):
        artifact.load_config(tmp_path / "nowhere")


def test_saving_again_removes_stale_onnx(saved, caplog):
    (saved / "model.onnx").write_bytes(b"old")
    encoder = artifact.load_encoder(saved)

    artifact.save_artifact(
        saved,
        config=artifact.load_config(saved),
        encoder=encoder,
        weights=artifact.load_weights(saved),
        metadata={},
    )

    assert not (saved / "model.onnx").exists()
    assert f"removed {saved / 'model.onnx'}, which was exported" in caplog.text
    assert f"'sentiment-lstm export --model {saved}'" in caplog.text


def test_files_readable_by_others(saved):
    # a server often runs under another account than the one that trained
    for path in saved.iterdir():
        assert path.stat().st_mode & 0o044 == 0o044, path.name


def test_ctrl_c_while_renaming_waits_for_all_files(
    saved, monkeypatch, python_sigint_handler
):
    renamed = []
    real_replace = os.replace

    def replace_then_interrupt(source, target):
        real_replace(source, target)
        if Path(target).parent != saved:
            return  # a rename inside the staging folder
        renamed.append(Path(target).name)
        if len(renamed) == 1:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)  # the handler runs here

    monkeypatch.setattr(artifact.os, "replace", replace_then_interrupt)
    new_weights = {"layer.weight": np.full((2, 3), 9.0, dtype=np.float32)}

    with interrupts.remembering_interrupts():
        with pytest.raises(KeyboardInterrupt):
            artifact.save_artifact(
                saved,
                config=ArtifactConfig(
                    model={"vocab_size": 8}, labels=("negative", "positive")
                ),
                encoder=artifact.load_encoder(saved),
                weights=new_weights,
                metadata={"note": "new"},
            )

    assert len(renamed) == len(list(saved.iterdir()))
    assert artifact.load_config(saved).model == {"vocab_size": 8}
    assert artifact.load_weights(saved)["layer.weight"].tolist() == [[9.0] * 3] * 2
    assert artifact.load_metadata(saved) == {"note": "new"}


def test_saved_files_recorded_in_config(saved):
    files = json.loads((saved / "config.json").read_text())["files"]

    assert sorted(files) == ["model.safetensors", "text_encoder.json", "tokenizer.json"]
    artifact.check_saved_files(saved, artifact.load_config(saved))


@pytest.mark.parametrize("name", ["model.safetensors", "tokenizer.json"])
def test_changed_file_rejected(saved, tmp_path, name):
    # The same kind of file from another model: valid, but not this model's.
    other = tmp_path / "other"
    encoder = TextEncoder.build(["a fine film", "a poor film"], TextEncoderConfig())
    artifact.save_artifact(
        other,
        config=ArtifactConfig(model={"vocab_size": 7}, labels=("negative", "positive")),
        encoder=encoder,
        weights={"layer.weight": np.ones((2, 3), dtype=np.float32)},
        metadata={},
    )
    (saved / name).write_bytes((other / name).read_bytes())

    with pytest.raises(ArtifactError, match=f"{name} is not the file saved"):
        artifact.check_saved_files(saved, artifact.load_config(saved))


def test_model_without_file_digests_loads(saved):
    config_path = saved / "config.json"
    values = json.loads(config_path.read_text())
    del values["files"]
    config_path.write_text(json.dumps(values))
    (saved / "tokenizer.json").write_text(
        (saved / "tokenizer.json").read_text().replace('"good"', '"great"')
    )

    config = artifact.load_config(saved)

    assert config.files is None
    artifact.check_saved_files(saved, config)


def test_absent_weights_not_checked(saved):
    (saved / "model.safetensors").unlink()

    artifact.check_saved_files(saved, artifact.load_config(saved))


@pytest.mark.parametrize(
    "files",
    [
        ["model.safetensors"],
        {"../secret": "0" * 64},
        {"model.safetensors": "not a digest"},
    ],
)
def test_bad_file_digests_rejected(saved, files):
    config_path = saved / "config.json"
    values = json.loads(config_path.read_text())
    values["files"] = files
    config_path.write_text(json.dumps(values))

    with pytest.raises(ArtifactError, match="'files' must map file names"):
        artifact.load_config(saved)
