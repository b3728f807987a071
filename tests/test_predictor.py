"""Loading a model directory with the ONNX Runtime and PyTorch backends."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import safetensors.numpy as safetensors_numpy
import onnx
import onnx.numpy_helper
import pytest
import torch

import sentiment_lstm
from sentiment_lstm import artifact
from sentiment_lstm import predictor as predictor_module
from sentiment_lstm.artifact import ArtifactConfig, ArtifactError, save_artifact
from sentiment_lstm.cli import main
from sentiment_lstm.export import export_model
from sentiment_lstm.extras import install_hint
from sentiment_lstm.files import file_sha256
from sentiment_lstm.model import ModelConfig, SentimentLSTM
from sentiment_lstm.predictor import (
    ScoringCancelled,
    ScoringStopped,
    EMPTY_REVIEW,
    OnnxBackend,
    SentimentModel,
    TorchBackend,
    physical_core_count,
)
from sentiment_lstm.text import PackedTokenIds, TextEncoder, TextEncoderConfig
from tests.conftest import NEGATIVE_REVIEWS, POSITIVE_REVIEWS

REPO_ROOT = Path(__file__).resolve().parents[1]

REVIEWS = [
    "a wonderful , moving film",
    "a dull , boring mess",
    "",
    "   ",
    "words the vocabulary never saw: zyzzyva quux",
    "great fun " * 60,
    "one",
]


def write_model_dir(
    directory: Path,
    *,
    bidirectional: bool = False,
    num_layers: int = 1,
    pooling: str = "last",
    seed: int = 0,
) -> Path:
    """Save an untrained model with spread-out weights, as train would save it.

    The weights are drawn with a larger scale than the initialisation, so that
    probabilities spread over (0, 1) and a wrong backend shows up in the
    comparisons.
    """
    encoder = TextEncoder.build(
        POSITIVE_REVIEWS + NEGATIVE_REVIEWS, TextEncoderConfig(max_length=120)
    )
    config = ModelConfig(
        vocab_size=encoder.vocab_size,
        embedding_dim=8,
        hidden_dim=8,
        num_layers=num_layers,
        bidirectional=bidirectional,
        pooling=pooling,
    )
    torch.manual_seed(seed)
    module = SentimentLSTM(config)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.normal_(0.0, 0.6)
    weights = {name: value.numpy() for name, value in module.state_dict().items()}
    save_artifact(
        directory,
        config=ArtifactConfig(model=config.to_dict(), labels=("negative", "positive")),
        encoder=encoder,
        weights=weights,
        metadata={"training": {"seed": seed}},
    )
    return directory


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """A model directory with model.onnx."""
    directory = write_model_dir(tmp_path_factory.mktemp("exported") / "model")
    export_model(directory)
    return directory


@pytest.fixture
def unexported(tmp_path) -> Path:
    """A model directory without model.onnx."""
    return write_model_dir(tmp_path / "model")


def concurrent_passes(backend, tokens: int, callers: int = 4) -> int:
    """Return the most forward passes of ``tokens`` ids that ran at once.

    Each of ``callers`` threads runs passes straight on the backend, as the
    threads of a server's requests do with one thread per model.
    """
    running = 0
    max_running = 0
    lock = threading.Lock()
    run = backend._run

    def counted(feed):
        nonlocal running, max_running
        with lock:
            running += 1
            max_running = max(max_running, running)
        try:
            time.sleep(0.05)
            return run(feed)
        finally:
            with lock:
                running -= 1

    backend._run = counted
    width = 8
    ids = np.full((tokens // width, width), 5, dtype=np.int64)
    lengths = np.full(tokens // width, width, dtype=np.int64)
    callers_threads = [
        threading.Thread(
            target=lambda: [backend.probabilities(ids, lengths) for _ in range(3)]
        )
        for _ in range(callers)
    ]
    for thread in callers_threads:
        thread.start()
    for thread in callers_threads:
        thread.join(timeout=60)
    return max_running


def test_large_passes_wait_for_thread_slots(exported):
    model = SentimentModel.load(exported, backend="onnx", threads=1)
    large = predictor_module.SLOT_FREE_TOKENS + 8

    assert concurrent_passes(model.backend, large) == 1


def test_small_passes_run_at_once(exported):
    model = SentimentModel.load(exported, backend="onnx", threads=1)

    assert concurrent_passes(model.backend, predictor_module.SLOT_FREE_TOKENS) > 1


def test_pass_on_event_loop_takes_no_slot(exported):
    import asyncio

    model = SentimentModel.load(exported, backend="onnx", threads=1)
    large = predictor_module.SLOT_FREE_TOKENS + 8
    ids = np.full((large // 8, 8), 5, dtype=np.int64)
    lengths = np.full(large // 8, 8, dtype=np.int64)
    results = []

    async def score_on_loop():
        # As a server scores a short request on its event loop.
        results.append(model.backend.probabilities(ids, lengths))

    loop_thread = threading.Thread(target=lambda: asyncio.run(score_on_loop()))
    model.backend._slots.acquire()
    try:
        loop_thread.start()
        loop_thread.join(timeout=10)
        finished_while_held = not loop_thread.is_alive()
    finally:
        model.backend._slots.release()
        loop_thread.join(timeout=30)

    assert finished_while_held
    assert results[0].shape == (large // 8, 2)


def test_pass_waiting_for_slot_stops_when_cancelled(exported):
    model = SentimentModel.load(exported, backend="onnx", threads=1)
    reviews = [" ".join(["great fun"] * 40)] * 64
    disconnected = threading.Event()
    errors: list[BaseException] = []

    def score() -> None:
        try:
            model.predict(reviews, cancelled=disconnected.is_set)
        except BaseException as err:
            errors.append(err)

    model.backend._slots.acquire()
    scorer = threading.Thread(target=score)
    scorer.start()
    time.sleep(0.3)
    disconnected.set()
    scorer.join(timeout=10)
    model.backend._slots.release()

    assert not scorer.is_alive()
    assert [type(err) for err in errors] == [ScoringCancelled]


def test_pass_waiting_for_slot_stops_on_close(exported):
    model = SentimentModel.load(exported, backend="onnx", threads=1)
    large = predictor_module.SLOT_FREE_TOKENS + 8
    ids = np.full((large // 8, 8), 5, dtype=np.int64)
    lengths = np.full(large // 8, 8, dtype=np.int64)
    errors: list[BaseException] = []

    def wait_for_slot() -> None:
        try:
            model.backend.probabilities(ids, lengths)
        except BaseException as err:
            errors.append(err)

    model.backend._slots.acquire()
    waiter = threading.Thread(target=wait_for_slot)
    waiter.start()
    time.sleep(0.2)
    model.close()
    waiter.join(timeout=10)

    assert not waiter.is_alive()
    assert [type(err) for err in errors] == [ScoringStopped]


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_close_stops_scoring_threads(exported, backend):
    model = SentimentModel.load(exported, backend=backend, threads=2)
    # One review a forward pass: seconds of work, after a quick tokenizing.
    reviews = ["great fun and a warm heart"] * 100_000
    errors: list[BaseException] = []

    def score() -> None:
        try:
            model.predict(reviews, batch_size=1)
        except BaseException as err:
            errors.append(err)

    scorers = [threading.Thread(target=score) for _ in range(3)]
    for scorer in scorers:
        scorer.start()
    time.sleep(1.0)
    closed_at = time.monotonic()
    model.close()
    assert all(scorer.is_alive() for scorer in scorers)
    for scorer in scorers:
        scorer.join(timeout=30)
    stopped_after = time.monotonic() - closed_at

    assert not any(scorer.is_alive() for scorer in scorers)
    assert stopped_after < 5
    assert len(errors) == 3
    assert all(isinstance(err, ScoringStopped) for err in errors), [
        repr(err) for err in errors
    ]
    with pytest.raises(ScoringStopped, match="load it again"):
        model.predict(["great fun"])
    # Also where nothing would reach a forward pass.
    with pytest.raises(ScoringStopped):
        model.predict([])
    with pytest.raises(ScoringStopped):
        model.predict(["<br />"])
    assert sentiment_lstm.ScoringStopped is ScoringStopped


def test_small_call_scored_in_calling_thread(exported):
    model = SentimentModel.load(exported, backend="onnx", threads=2)
    assert model.backend.parallel_batches == 2

    small = model.predict_proba(["great fun"] * 16)
    pool_after_small = model._executor
    large = model.predict_proba(["great fun"] * 17)

    # A call of one small batch does not wait behind other calls' batches.
    assert pool_after_small is None
    assert model._executor is not None
    assert np.array_equal(small, large[:16])


def test_close_stops_tokenizing(exported, monkeypatch):
    model = SentimentModel.load(exported, backend="onnx")
    monkeypatch.setattr(predictor_module, "ENCODE_PART_CHARS", 50)
    monkeypatch.setattr(predictor_module, "ENCODE_PART_TEXTS", 1)
    reviews = ["un café tiède et une fin triste"] * 6
    parts = []
    encode_packed = model.encoder.encode_packed

    def encode_then_close(texts):
        parts.append(list(texts))
        model.close()
        return encode_packed(texts)

    monkeypatch.setattr(model.encoder, "encode_packed", encode_then_close)

    with pytest.raises(ScoringStopped):
        model.predict(reviews)
    # 31 characters a review: the first part ends once it has 50.
    assert parts == [reviews[:2]]


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_cancelled_call_stops_between_batches(exported, backend):
    model = SentimentModel.load(exported, backend=backend, threads=2)
    reviews = ["great fun and a warm heart"] * 2_000
    passes = []
    probabilities = model.backend.probabilities

    def counted(ids, lengths):
        passes.append(len(ids))
        return probabilities(ids, lengths)

    model.backend.probabilities = counted
    model.predict(reviews, batch_size=16)
    all_passes = len(passes)
    passes.clear()

    with pytest.raises(ScoringCancelled):
        model.predict(reviews, batch_size=16, cancelled=lambda: len(passes) >= 3)
    # With ONNX Runtime, up to two batches per thread were queued before the
    # check and may have run.
    queued = 2 * getattr(model.backend, "parallel_batches", 0)
    assert 3 <= len(passes) <= 3 + queued
    assert all_passes == 125
    # The model scores the next call in full.
    assert np.array_equal(
        model.predict_proba(reviews[:20], cancelled=lambda: False),
        model.predict_proba(reviews[:20]),
    )


def test_cancelled_before_tokenizing(exported, monkeypatch):
    model = SentimentModel.load(exported, backend="onnx")
    monkeypatch.setattr(predictor_module, "ENCODE_PART_CHARS", 10)
    monkeypatch.setattr(predictor_module, "ENCODE_PART_TEXTS", 1)
    parts = []
    encode_packed = model.encoder.encode_packed

    def recorded(texts):
        parts.append(list(texts))
        return encode_packed(texts)

    monkeypatch.setattr(model.encoder, "encode_packed", recorded)
    reviews = ["a long and dull evening", "warm", "flat"]

    with pytest.raises(ScoringCancelled, match="cancelled by the caller"):
        model.predict(reviews, cancelled=lambda: len(parts) == 1)
    assert parts == [reviews[:1]]
    with pytest.raises(ScoringCancelled):
        model.predict([], cancelled=lambda: True)
    assert sentiment_lstm.ScoringCancelled is ScoringCancelled


@pytest.mark.parametrize("method", ["predict", "predict_proba", "score_token_ids"])
def test_cancelled_not_callable_rejected(exported, method):
    model = SentimentModel.load(exported, backend="onnx")
    reviews = [[5, 6]] if method == "score_token_ids" else ["great fun"]

    with pytest.raises(TypeError) as excinfo:
        getattr(model, method)(reviews, cancelled=True)

    assert str(excinfo.value).startswith(
        f"{method}: cancelled must be a function of no arguments"
    )
    assert str(excinfo.value).endswith("got bool True")


def test_package_dir_lists_lazy_names():
    assert {"SentimentModel", "Prediction", "__version__"} <= set(dir(sentiment_lstm))


def test_tokenized_parts_joined_in_order(exported, monkeypatch):
    model = SentimentModel.load(exported, backend="onnx")
    reviews = [
        "great fun",
        "",
        "un café tiède",
        "a dull , boring mess " * 20,
        "<br />",
        "warm",
    ]
    whole = model.predict_proba(reviews)

    monkeypatch.setattr(predictor_module, "ENCODE_PART_CHARS", 10)
    monkeypatch.setattr(predictor_module, "ENCODE_PART_TEXTS", 2)
    joined = PackedTokenIds.concatenate(
        [
            model.encoder.encode_packed(reviews[:3]),
            model.encoder.encode_packed(reviews[3:]),
        ]
    )

    assert np.array_equal(model.predict_proba(reviews), whole, equal_nan=True)
    assert list(joined) == list(model.encoder.encode_packed(reviews))
    assert len(PackedTokenIds.concatenate([])) == 0


@pytest.mark.skipif(os.name == "nt", reason="needs flock")
@pytest.mark.parametrize("saved_in_time", [True, False])
def test_load_waits_for_a_save_in_progress(exported, tmp_path, saved_in_time):
    from sentiment_lstm.cli.train_output import output_dir_lock

    model_dir = tmp_path / "model"
    shutil.copytree(exported, model_dir)
    weights = model_dir / "model.safetensors"
    saved = weights.read_bytes()
    # A train run is between writing two of the model's files.
    weights.write_bytes(saved[:-8] + bytes(8))

    def finish_saving() -> None:
        weights.write_bytes(saved)

    timer = threading.Timer(0.3, finish_saving)
    with output_dir_lock(model_dir):
        if saved_in_time:
            timer.start()
        try:
            if saved_in_time:
                model = SentimentModel.load(model_dir, backend="onnx")
            else:
                with pytest.raises(artifact.ArtifactError) as raised:
                    SentimentModel.load(model_dir, backend="onnx")
        finally:
            timer.cancel()

    if saved_in_time:
        assert model.predict(["great fun"])[0].error is None
    else:
        assert str(raised.value) == (
            f"{model_dir} is being written by a 'sentiment-lstm train' run or "
            "export in progress, and its files are not yet all of one save; try "
            "again once it has finished saving"
        )


@pytest.mark.parametrize("saved_before_check", [True, False])
def test_load_reads_again_after_run_ends(
    exported, tmp_path, monkeypatch, saved_before_check
):
    model_dir = tmp_path / "model"
    shutil.copytree(exported, model_dir)
    weights = model_dir / "model.safetensors"
    saved = weights.read_bytes()
    # A train run wrote the last file and ended after the load read the
    # weights of the epoch before and before it checked the folder's lock.
    weights.write_bytes(saved[:-8] + bytes(8))
    checks = []

    def unlocked_after_last_save(path):
        checks.append(path)
        if saved_before_check:
            weights.write_bytes(saved)
        return False

    monkeypatch.setattr(predictor_module, "folder_locked", unlocked_after_last_save)

    if saved_before_check:
        model = SentimentModel.load(model_dir, backend="onnx")
        assert model.predict(["great fun"])[0].error is None
        assert len(checks) == 1
    else:
        # A changed file stays an error, after one more read.
        with pytest.raises(artifact.ArtifactError, match="model.safetensors"):
            SentimentModel.load(model_dir, backend="onnx")
        assert len(checks) == 2


def test_auto_picks_onnx(exported):
    model = SentimentModel.load(exported)

    assert model.backend.name == "onnx"


def test_auto_falls_back_to_torch(unexported):
    model = SentimentModel.load(unexported)

    assert model.backend.name == "torch"


def test_explicit_torch_ignores_onnx(exported):
    model = SentimentModel.load(exported, backend="torch")

    assert isinstance(model.backend, TorchBackend)


def test_unknown_backend(exported):
    with pytest.raises(ValueError, match="'tensorrt'"):
        SentimentModel.load(exported, backend="tensorrt")


def test_onnx_missing_file(unexported):
    with pytest.raises(ArtifactError) as error:
        SentimentModel.load(unexported, backend="onnx")

    message = str(error.value)
    assert str(unexported / "model.onnx") in message
    assert "sentiment-lstm export --model" in message


@pytest.mark.parametrize("backend", ["auto", "onnx"])
def test_corrupt_onnx(unexported, backend):
    onnx_path = unexported / artifact.ONNX_FILE
    onnx_path.write_bytes(b"\x08\x07 this is not a protobuf")

    with pytest.raises(ArtifactError) as error:
        SentimentModel.load(unexported, backend=backend)

    assert str(onnx_path) in str(error.value)
    assert "corrupt" in str(error.value)


def replace_with_non_file(path: Path, kind: str) -> str:
    """Put a folder or a looping link where a file was; return its description."""
    path.unlink()
    if kind == "folder":
        path.mkdir()
        return "a folder"
    path.symlink_to(path.name)
    return "a broken or looping link"


@pytest.mark.parametrize(
    ("name", "backend"),
    [
        (artifact.ONNX_FILE, "auto"),
        (artifact.ONNX_FILE, "onnx"),
        (artifact.CONFIG_FILE, "auto"),
    ],
)
@pytest.mark.parametrize("kind", ["folder", "looping link"])
def test_model_file_not_a_file(tmp_path, exported, name, backend, kind):
    directory = _copy_model(exported, tmp_path / "model")
    path = directory / name
    expected = replace_with_non_file(path, kind)

    with pytest.raises(ArtifactError) as error:
        SentimentModel.load(directory, backend=backend)

    assert str(error.value).startswith(f"{path} is {expected}, not a regular file; ")


def test_onnx_fifo_named(tmp_path, exported):
    directory = _copy_model(exported, tmp_path / "model")
    onnx_path = directory / artifact.ONNX_FILE
    onnx_path.unlink()
    os.mkfifo(onnx_path)

    with pytest.raises(ArtifactError, match="is a pipe, socket or device, not a"):
        SentimentModel.load(directory)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files without permission")
def test_unreadable_onnx_named(tmp_path, exported):
    directory = _copy_model(exported, tmp_path / "model")
    onnx_path = directory / artifact.ONNX_FILE
    onnx_path.chmod(0)

    with pytest.raises(ArtifactError) as error:
        SentimentModel.load(directory)

    assert str(error.value) == (
        f"cannot read {onnx_path}: Permission denied; check the file's permissions"
    )


def test_auto_without_any_runtime_names_onnxruntime(exported, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    monkeypatch.setitem(sys.modules, "torch", None)

    with pytest.raises(ImportError) as error:
        SentimentModel.load(exported)

    message = str(error.value)
    assert message.startswith(f"{exported / artifact.ONNX_FILE} needs onnxruntime")
    assert message.endswith(install_hint("serve"))


def test_auto_without_onnx_file_or_torch(unexported, monkeypatch):
    # A serving install: no PyTorch, and the model was not exported.
    monkeypatch.setitem(sys.modules, "torch", None)

    with pytest.raises(ImportError) as error:
        SentimentModel.load(unexported)

    message = str(error.value)
    assert message.startswith(
        f"{unexported / artifact.ONNX_FILE} is missing, and the other backend "
        "needs PyTorch, which is not installed; run 'sentiment-lstm export"
    )
    assert install_hint("train") in message


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (None, "is not a sentiment-lstm model directory: it has none of"),
        ('{"model_type": "bert"}', "is not the config of a sentiment-lstm model"),
        ('{"format_version": "1", "model": {}, "labels": []}', 'version "1"'),
        ('{"labels": ["a", "b"]}', r"has no format_version\), so"),
        ("[]", "must hold a JSON object, found an array; copy"),
        ("null", "must hold a JSON object, found null; copy"),
    ],
)
def test_not_a_model_folder(tmp_path, config, expected):
    directory = tmp_path / "folder"
    directory.mkdir()
    if config is not None:
        (directory / artifact.CONFIG_FILE).write_text(config)

    with pytest.raises(ArtifactError, match=expected):
        SentimentModel.load(directory)


def test_edited_encoder_config_named(tmp_path, exported):
    directory = _copy_model(exported, tmp_path / "model")
    path = directory / "text_encoder.json"
    values = json.loads(path.read_text())
    values["config"]["max_length"] = 4
    path.write_text(json.dumps(values))

    with pytest.raises(ArtifactError) as error:
        SentimentModel.load(directory)

    assert str(error.value).startswith(
        f"{path} is not the file saved with this model: its SHA-256 differs"
    )


def load_or_export(directory: Path, load: str) -> None:
    """Load a model with PyTorch, or export it, which loads it the same way."""
    if load == "torch":
        SentimentModel.load(directory, backend="torch")
    else:
        export_model(directory)


def edit_network_setting(directory: Path, key: str, value: object) -> Path:
    """Set one network setting in a model's config.json; return the file."""
    path = directory / artifact.CONFIG_FILE
    values = json.loads(path.read_text())
    values["model"][key] = value
    path.write_text(json.dumps(values))
    return path


def edited_settings_message(directory: Path) -> str:
    """Return the start of the error that names an edited config.json."""
    return (
        f'{directory / artifact.CONFIG_FILE}: its network settings ("model") '
        f"differ from those that {directory / artifact.WEIGHTS_FILE} was saved with"
    )


@pytest.mark.parametrize("load", ["torch", "export"])
def test_edited_network_settings_named(tmp_path, load):
    directory = write_model_dir(tmp_path / "model")
    # Max pooling uses the same weights as the last state, so only the
    # record in the weights file distinguishes the networks.
    edit_network_setting(directory, "pooling", "max")

    with pytest.raises(ArtifactError) as error:
        load_or_export(directory, load)

    assert str(error.value).startswith(edited_settings_message(directory))
    assert not (directory / artifact.ONNX_FILE).exists()


def test_edited_settings_named_with_onnx(tmp_path, exported):
    directory = tmp_path / "model"
    shutil.copytree(exported, directory)
    edit_network_setting(directory, "pooling", "max")

    with pytest.raises(ArtifactError) as error:
        SentimentModel.load(directory, backend="onnx")

    # config.json changed, not model.onnx, so exporting again would not help.
    assert str(error.value).startswith(edited_settings_message(directory))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("bidirectional", True),
        ("num_layers", 2),
        ("hidden_dim", 17),
        ("pooling", "attention"),
        ("vocab_size", 5),
    ],
)
@pytest.mark.parametrize("load", ["torch", "export"])
def test_edited_shape_settings_named(tmp_path, load, key, value):
    directory = write_model_dir(tmp_path / "model")
    edit_network_setting(directory, key, value)

    with pytest.raises(ArtifactError) as error:
        load_or_export(directory, load)

    # Not the weights' or the tokenizer's fault, nor PyTorch's list of shapes.
    assert str(error.value).startswith(edited_settings_message(directory))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files without permission")
def test_unreadable_weights_named(tmp_path):
    directory = write_model_dir(tmp_path / "model")
    weights = directory / artifact.WEIGHTS_FILE
    weights.chmod(0)

    with pytest.raises(ArtifactError, match="check the file's permissions") as error:
        SentimentModel.load(directory, backend="torch")

    assert str(error.value).startswith(f"cannot read {weights}: Permission denied")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files without permission")
def test_unsearchable_model_folder_named(tmp_path):
    directory = write_model_dir(tmp_path / "model")
    directory.chmod(0o444)
    try:
        with pytest.raises(ArtifactError) as error:
            SentimentModel.load(directory, backend="torch")
    finally:
        directory.chmod(0o755)

    assert str(error.value) == (
        f"cannot read model directory {directory}: Permission denied; check the "
        "folder's permissions (chmod u+rx)"
    )


def test_weights_without_settings_record_load(tmp_path):
    directory = write_model_dir(tmp_path / "model")
    weights_path = directory / artifact.WEIGHTS_FILE
    # Weights saved by earlier builds carry no metadata.
    safetensors_numpy.save_file(
        safetensors_numpy.load_file(str(weights_path)), str(weights_path)
    )
    drop_file_digests(directory)

    model = SentimentModel.load(directory, backend="torch")

    assert model.predict(["great fun"])[0].label in ("positive", "negative")


@pytest.mark.parametrize("load", ["torch", "export"])
def test_weights_of_other_shapes_named(tmp_path, load):
    # Weights from a model of another size fail in PyTorch's load, which
    # would list the shapes; the digest names the copied file instead.
    directory = write_model_dir(tmp_path / "model")
    other = write_model_dir(tmp_path / "other", bidirectional=True)
    weights = directory / artifact.WEIGHTS_FILE
    weights.write_bytes((other / artifact.WEIGHTS_FILE).read_bytes())

    with pytest.raises(ArtifactError) as error:
        load_or_export(directory, load)

    assert str(error.value).startswith(
        f"{weights} is not the file saved with this model: its SHA-256 differs"
    )


def test_empty_onnx_file(unexported):
    (unexported / artifact.ONNX_FILE).write_bytes(b"")

    with pytest.raises(ArtifactError, match="model.onnx"):
        SentimentModel.load(unexported, backend="onnx")


def test_onnx_from_other_weights(tmp_path):
    directory = write_model_dir(tmp_path / "model", seed=1)
    export_model(directory)
    other = write_model_dir(tmp_path / "other", seed=2)
    # save_artifact removes a stale model.onnx, so copy it back in by hand.
    (other / artifact.ONNX_FILE).write_bytes(
        (directory / artifact.ONNX_FILE).read_bytes()
    )

    with pytest.raises(ArtifactError, match="exported from other weights"):
        SentimentModel.load(other, backend="onnx")


def _copy_model(source: Path, directory: Path) -> Path:
    directory.mkdir()
    for path in source.iterdir():
        (directory / path.name).write_bytes(path.read_bytes())
    return directory


def _onnx_only_copy(source: Path, directory: Path) -> Path:
    directory.mkdir()
    for path in source.iterdir():
        if path.name != artifact.WEIGHTS_FILE:
            (directory / path.name).write_bytes(path.read_bytes())
    return directory


def drop_file_digests(directory: Path) -> None:
    """Make config.json look as it did before it recorded file digests."""
    config_path = directory / artifact.CONFIG_FILE
    values = json.loads(config_path.read_text())
    del values[artifact.FILES_KEY]
    config_path.write_text(json.dumps(values))


def drop_onnx_digest(directory: Path) -> Path:
    """Remove the SHA-256 of model.onnx from config.json, as older exports left it.

    Returns:
        The path of config.json.
    """
    config_path = directory / artifact.CONFIG_FILE
    values = json.loads(config_path.read_text())
    del values[artifact.FILES_KEY][artifact.ONNX_FILE]
    config_path.write_text(json.dumps(values))
    return config_path


def test_onnx_only_from_other_network(tmp_path, exported):
    other = write_model_dir(tmp_path / "other", bidirectional=True)
    export_model(other)
    directory = _onnx_only_copy(exported, tmp_path / "onnx-only")
    (directory / artifact.ONNX_FILE).write_bytes(
        (other / artifact.ONNX_FILE).read_bytes()
    )
    unrecorded = _onnx_only_copy(directory, tmp_path / "unrecorded")
    drop_file_digests(unrecorded)

    with pytest.raises(ArtifactError, match="model.onnx is not the file .* export"):
        SentimentModel.load(directory, backend="onnx")
    # The ONNX metadata catches it in models saved without file digests.
    with pytest.raises(ArtifactError, match="network with other settings"):
        SentimentModel.load(unrecorded, backend="onnx")


def test_export_records_onnx_digest(exported):
    config = artifact.load_config(exported)

    assert config.files[artifact.ONNX_FILE] == file_sha256(
        exported / artifact.ONNX_FILE
    )
    assert artifact.WEIGHTS_FILE in config.files


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_unrecorded_digests_warned(tmp_path, exported, caplog, backend):
    unrecorded = _onnx_only_copy(exported, tmp_path / "unrecorded")
    (unrecorded / artifact.WEIGHTS_FILE).write_bytes(
        (exported / artifact.WEIGHTS_FILE).read_bytes()
    )
    drop_file_digests(unrecorded)
    caplog.set_level("WARNING", logger="sentiment_lstm.predictor")

    SentimentModel.load(exported, backend=backend)
    recorded_warnings = list(caplog.records)
    SentimentModel.load(unrecorded, backend=backend)

    assert recorded_warnings == []
    (warning,) = caplog.records
    assert warning.levelname == "WARNING"
    saved = "model.safetensors, tokenizer.json, text_encoder.json"
    if backend == "onnx":
        # PyTorch does not read model.onnx.
        assert warning.getMessage() == (
            f"{unrecorded / artifact.CONFIG_FILE} records no SHA-256 of {saved}, "
            "model.onnx, so they are not checked against the files saved with "
            "the model; retrain to record those of the saved files, and run "
            f"'sentiment-lstm export --model {unrecorded}' again for model.onnx"
        )
    else:
        assert warning.getMessage() == (
            f"{unrecorded / artifact.CONFIG_FILE} records no SHA-256 of {saved}, "
            "so they are not checked against the files saved with the model; "
            "retrain to record those of the saved files"
        )


def test_unrecorded_onnx_only_copy_warned(tmp_path, exported, caplog):
    # A deployment of model.onnx without the weights cannot export again.
    directory = _onnx_only_copy(exported, tmp_path / "onnx-only")
    drop_onnx_digest(directory)
    caplog.set_level("WARNING", logger="sentiment_lstm.predictor")

    SentimentModel.load(directory, backend="onnx")

    (warning,) = caplog.records
    assert warning.getMessage().endswith(
        "; export the full model folder again and copy its model.onnx and "
        "config.json here"
    )


def test_unrecorded_onnx_digest_warned(tmp_path, exported, caplog):
    # A model exported by a version that recorded no digest of model.onnx.
    directory = _onnx_only_copy(exported, tmp_path / "old-export")
    (directory / artifact.WEIGHTS_FILE).write_bytes(
        (exported / artifact.WEIGHTS_FILE).read_bytes()
    )
    config_path = drop_onnx_digest(directory)
    caplog.set_level("WARNING", logger="sentiment_lstm.predictor")

    SentimentModel.load(directory, backend="onnx")

    (warning,) = caplog.records
    assert warning.getMessage() == (
        f"{config_path} records no SHA-256 of model.onnx, so it is not checked "
        "against the files saved with the model; run 'sentiment-lstm export "
        f"--model {directory}' again for model.onnx"
    )


def _edit_classifier_bias(onnx_path: Path) -> None:
    """Change the classifier bias in model.onnx, keeping it a valid model."""
    model = onnx.load(str(onnx_path))
    (bias,) = [t for t in model.graph.initializer if "classifier_bias" in t.name]
    values = onnx.numpy_helper.to_array(bias) + np.float32(5.0)
    bias.CopyFrom(onnx.numpy_helper.from_array(values, bias.name))
    onnx.save(model, str(onnx_path))


def test_edited_onnx_rejected(tmp_path, exported):
    directory = _onnx_only_copy(exported, tmp_path / "edited")
    _edit_classifier_bias(directory / artifact.ONNX_FILE)

    with pytest.raises(ArtifactError, match="run 'sentiment-lstm export --model"):
        SentimentModel.load(directory, backend="onnx")


def test_export_replaces_edited_onnx(tmp_path, exported):
    directory = _copy_model(exported, tmp_path / "edited")
    _edit_classifier_bias(directory / artifact.ONNX_FILE)

    torch_scores = SentimentModel.load(directory, backend="torch").predict_proba(
        REVIEWS
    )
    export_model(directory)
    onnx_scores = SentimentModel.load(directory, backend="onnx").predict_proba(REVIEWS)

    scored = ~np.isnan(torch_scores)
    assert np.max(np.abs(onnx_scores[scored] - torch_scores[scored])) <= 1e-5


def test_onnx_backend_names_changed_weights(tmp_path, exported):
    directory = _copy_model(exported, tmp_path / "changed")
    other = write_model_dir(tmp_path / "other", seed=3)
    (directory / artifact.WEIGHTS_FILE).write_bytes(
        (other / artifact.WEIGHTS_FILE).read_bytes()
    )

    with pytest.raises(ArtifactError, match="model.safetensors is not the file saved"):
        SentimentModel.load(directory, backend="onnx")


def swap_two_token_ids(directory: Path) -> None:
    """Swap the ids of two words in tokenizer.json, keeping its size.

    Another training run on the same words could give such a tokenizer.
    """
    tokenizer_path = directory / "tokenizer.json"
    tokenizer = json.loads(tokenizer_path.read_text())
    vocabulary = tokenizer["model"]["vocab"]
    first, second = sorted(vocabulary, key=vocabulary.get)[-2:]
    vocabulary[first], vocabulary[second] = vocabulary[second], vocabulary[first]
    tokenizer_path.write_text(json.dumps(tokenizer))


def test_onnx_only_with_other_tokenizer(tmp_path, exported):
    directory = _onnx_only_copy(exported, tmp_path / "onnx-only")
    swap_two_token_ids(directory)
    unrecorded = _onnx_only_copy(directory, tmp_path / "unrecorded")
    drop_file_digests(unrecorded)

    with pytest.raises(ArtifactError, match="tokenizer.json is not the file saved"):
        SentimentModel.load(directory, backend="onnx")
    # The ONNX metadata catches it in models saved without file digests.
    with pytest.raises(ArtifactError, match="another tokenizer"):
        SentimentModel.load(unrecorded, backend="onnx")


def test_torch_backend_with_other_tokenizer(unexported):
    # The size stays the same, so only the saved SHA-256 differs.
    swap_two_token_ids(unexported)

    with pytest.raises(ArtifactError, match="tokenizer.json is not the file saved"):
        SentimentModel.load(unexported, backend="torch")


def test_onnx_without_weights_file(tmp_path, exported):
    directory = tmp_path / "onnx-only"
    directory.mkdir()
    for path in exported.iterdir():
        if path.name != artifact.WEIGHTS_FILE:
            (directory / path.name).write_bytes(path.read_bytes())

    model = SentimentModel.load(directory, backend="onnx")

    assert model.predict(["great fun"])[0].label in ("positive", "negative")


def test_onnx_matches_torch(exported):
    onnx_model = SentimentModel.load(exported, backend="onnx")
    torch_model = SentimentModel.load(exported, backend="torch")

    onnx_scores = onnx_model.predict_proba(REVIEWS)
    torch_scores = torch_model.predict_proba(REVIEWS)

    scored = ~np.isnan(torch_scores)
    assert np.array_equal(np.isnan(onnx_scores), np.isnan(torch_scores))
    assert np.max(np.abs(onnx_scores[scored] - torch_scores[scored])) <= 1e-5
    assert np.ptp(torch_scores[scored]) > 0.05


def test_onnx_labels_match_torch(exported):
    onnx_predictions = SentimentModel.load(exported, backend="onnx").predict(REVIEWS)
    torch_predictions = SentimentModel.load(exported, backend="torch").predict(REVIEWS)

    assert [p.label for p in onnx_predictions] == [p.label for p in torch_predictions]


def test_empty_reviews_keep_place(exported):
    predictions = SentimentModel.load(exported).predict(REVIEWS)

    assert [p.text for p in predictions] == REVIEWS
    assert predictions[2].error == EMPTY_REVIEW
    assert predictions[3].error == EMPTY_REVIEW
    assert predictions[2].positive is None
    assert predictions[0].positive + predictions[0].negative == pytest.approx(1.0)


def test_predict_takes_generator(exported):
    model = SentimentModel.load(exported)
    reviews = REVIEWS * 10

    predictions = model.predict(review for review in reviews)

    assert [p.text for p in predictions] == reviews
    assert [p.positive for p in predictions] == [
        p.positive for p in model.predict(reviews)
    ]


def test_single_string_rejected(exported):
    with pytest.raises(TypeError, match="list of reviews"):
        SentimentModel.load(exported).predict("great fun")


@pytest.mark.parametrize("texts", [b"great fun", bytearray(b"great fun")])
@pytest.mark.parametrize("method", ["predict", "predict_proba"])
def test_single_bytes_rejected(exported, texts, method):
    model = SentimentModel.load(exported)

    with pytest.raises(TypeError) as raised:
        getattr(model, method)(texts)

    message = str(raised.value)
    assert type(texts).__name__ in message
    assert "decode it to str and wrap it in a list" in message


class DataFrame:
    """Stands in for a pandas DataFrame: iterating gives its column labels."""

    columns = ["review"]
    iloc = None

    def __iter__(self):
        return iter(self.columns)


@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        ("great fun", "{method} takes a list of reviews, not a single string; wrap"),
        (
            DataFrame(),
            "{method} takes a list of reviews, got a DataFrame, whose column "
            'names would be scored; pass its review column, such as df["review"]',
        ),
        (
            {"great fun": 1},
            "{method} takes a list of reviews, got a dict, whose keys would be "
            "scored; pass a list of its reviews, such as list(reviews.values())",
        ),
        (None, "{method} takes a list of reviews, got NoneType None"),
        (5, "{method} takes a list of reviews, got int 5"),
    ],
)
@pytest.mark.parametrize("method", ["predict", "predict_proba"])
def test_non_list_reviews_rejected(exported, texts, expected, method):
    model = SentimentModel.load(exported)

    with pytest.raises(TypeError) as raised:
        getattr(model, method)(texts)

    assert str(raised.value).startswith(expected.format(method=method))


@pytest.mark.parametrize("item", [3, None, 2.5])
@pytest.mark.parametrize("method", ["predict", "predict_proba"])
def test_non_str_review_named_by_index(exported, item, method):
    model = SentimentModel.load(exported)

    with pytest.raises(TypeError) as raised:
        getattr(model, method)(["good", item])

    assert str(raised.value).startswith(
        f"{method}: text at index 1 must be a str, got {type(item).__name__}"
    )


def test_too_long_review_not_scored(exported, monkeypatch):
    from sentiment_lstm import predictor

    monkeypatch.setattr(predictor, "MAX_REVIEW_CHARS", 20)
    model = SentimentModel.load(exported)
    reviews = ["great fun", "a wonderful film, " * 2, ""]

    predictions = model.predict(reviews)
    positive = model.predict_proba(reviews)

    assert predictions[0].error is None
    assert predictions[1].positive is None
    assert predictions[1].error == predictor.TOO_LONG_REASON
    assert predictions[2].error == predictor.EMPTY_REVIEW
    assert not np.isnan(positive[0])
    assert np.isnan(positive[1])


class RecordingBackend:
    """Scores every review 0.75 positive and records each batch's shape."""

    name = "recording"

    def __init__(self) -> None:
        self.shapes: list[tuple[int, int]] = []

    def probabilities(self, token_ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        self.shapes.append(token_ids.shape)
        assert token_ids.dtype == np.int64
        assert lengths.dtype == np.int64
        assert int(lengths.max()) == token_ids.shape[1]
        return np.tile(np.array([[0.25, 0.75]], dtype=np.float32), (len(lengths), 1))


def recording_model(exported: Path) -> tuple[SentimentModel, RecordingBackend]:
    backend = RecordingBackend()
    encoder = artifact.load_encoder(exported)
    return SentimentModel(encoder, backend, ("negative", "positive")), backend


def test_batches_respect_token_budget(exported):
    model, backend = recording_model(exported)
    token_ids = [[2] * length for length in (1, 3, 3, 5, 9, 9, 9, 30, 2, 0)]

    model.score_token_ids(token_ids, batch_size=4, max_batch_tokens=20)

    assert all(rows <= 4 for rows, _ in backend.shapes)
    assert all(rows * width <= 20 or rows == 1 for rows, width in backend.shapes)
    assert sum(rows for rows, _ in backend.shapes) == 9


def test_batches_sorted_by_length(exported):
    model, backend = recording_model(exported)
    token_ids = [[2] * length for length in (7, 1, 7, 1, 7, 1)]

    model.score_token_ids(token_ids, batch_size=3)

    assert backend.shapes == [(3, 1), (3, 7)]


def test_scores_keep_input_order(exported):
    model = SentimentModel.load(exported, backend="onnx")
    one_by_one = np.array([model.predict_proba([review])[0] for review in REVIEWS])

    batched = model.score_token_ids(
        model.encoder.encode_batch(REVIEWS), batch_size=3, max_batch_tokens=8
    )

    assert np.allclose(batched, one_by_one, atol=1e-6, equal_nan=True)


def test_parallel_batches_match_sequential(exported, monkeypatch):
    reviews = [REVIEWS[i % len(REVIEWS)] + " fun" * (i % 9) for i in range(200)]
    # Three threads, as on a machine of at least three CPUs.
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    sequential = SentimentModel.load(exported, backend="onnx", threads=1)
    parallel = SentimentModel.load(exported, backend="onnx", threads=3)

    expected = sequential.predict_proba(reviews, batch_size=8)
    actual = parallel.predict_proba(reviews, batch_size=8)

    assert parallel.backend.parallel_batches == 3
    assert np.array_equal(actual, expected, equal_nan=True)


def test_submitted_chunks_match_one_call(exported):
    # File scoring queues two chunks before it reads either result.
    reviews = [REVIEWS[i % len(REVIEWS)] + " fun" * (i % 7) for i in range(120)]
    model = SentimentModel.load(exported, backend="onnx", threads=2)
    first = model.encoder.encode_batch(reviews[:70] + [""])
    second = model.encoder.encode_batch(reviews[70:])

    pending_first = model.submit_token_ids(first, batch_size=8)
    pending_second = model.submit_token_ids(second, batch_size=8)

    expected = SentimentModel.load(exported, backend="onnx", threads=1)
    assert np.array_equal(
        pending_second.result(), expected.score_token_ids(second, batch_size=8)
    )
    assert np.array_equal(
        pending_first.result(),
        expected.score_token_ids(first, batch_size=8),
        equal_nan=True,
    )
    assert np.isnan(pending_first.result()[-1])


def test_submit_without_thread_pool(exported):
    model, backend = recording_model(exported)

    pending = model.submit_token_ids([[2, 3], [4]], batch_size=1)

    # The recording backend has no parallel_batches, so both passes ran.
    assert len(backend.shapes) == 2
    assert pending.result().shape == (2,)


@pytest.mark.parametrize("digests", [True, False])
def test_foreign_tokenizer_rejected(tmp_path, digests):
    model_dir = write_model_dir(tmp_path / "model")
    other = TextEncoder.build(["a film", "another film"], TextEncoderConfig())
    other.save(model_dir)
    if not digests:
        # a model saved before file digests were recorded
        drop_file_digests(model_dir)
    expected = (
        "text_encoder.json is not the file saved with this model"
        if digests
        else "the tokenizer files belong to another model"
    )

    with pytest.raises(ArtifactError, match=expected):
        SentimentModel.load(model_dir, backend="torch")
    with pytest.raises(ArtifactError, match=expected):
        export_model(model_dir)
    assert not (model_dir / "model.onnx").exists()


def test_missing_tokenizer_message(tmp_path):
    model_dir = write_model_dir(tmp_path / "model")
    (model_dir / "tokenizer.json").unlink()

    with pytest.raises(ArtifactError, match="copy the whole directory again"):
        export_model(model_dir)


def test_invalid_batch_size(exported):
    model = SentimentModel.load(exported)

    with pytest.raises(ValueError, match="batch_size must be at least 1, got 0"):
        model.score_token_ids([[2]], batch_size=0)
    with pytest.raises(ValueError, match="max_batch_tokens must be at least 1"):
        model.submit_token_ids([[2]], max_batch_tokens=0)


@pytest.mark.parametrize("value", [1.5, "8", None, True])
def test_batch_size_of_another_type(exported, value):
    model = SentimentModel.load(exported)

    with pytest.raises(TypeError, match=f"batch_size must be an int, got .*{value!r}"):
        model.predict(["great fun"], batch_size=value)


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_threads_of_another_type(exported, backend):
    with pytest.raises(TypeError, match="threads must be an int, got str '2'"):
        SentimentModel.load(exported, backend=backend, threads="2")
    with pytest.raises(ValueError, match="threads must be at least 1, got 0"):
        SentimentModel.load(exported, backend=backend, threads=0)
    too_many = (os.cpu_count() or 1) + 1
    with pytest.raises(
        ValueError, match=f"threads must be at most {too_many - 1}, the logical"
    ):
        SentimentModel.load(exported, backend=backend, threads=too_many)


def test_physical_core_count():
    count = physical_core_count()

    assert 1 <= count <= (os.cpu_count() or 1)


def test_onnx_threads(exported):
    assert OnnxBackend(exported / "model.onnx").threads == physical_core_count()
    assert OnnxBackend(exported / "model.onnx", threads=1).threads == 1


# Scores with two ONNX Runtime threads, forks, and scores again in the child.
# It runs in a process of its own, so that no thread of the test run is
# forked, and prints the child's scores, or "timed out".
FORK_SCRIPT = textwrap.dedent("""
    import json
    import os
    import sys
    import time

    from sentiment_lstm.predictor import SentimentModel

    model = SentimentModel.load(sys.argv[1], backend="onnx", threads=2)
    reviews = json.loads(sys.argv[2])
    print(json.dumps(model.predict_proba(reviews).tolist()), flush=True)
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read_end)
        scores = model.predict_proba(reviews).tolist()
        os.write(write_end, json.dumps(scores).encode())
        os._exit(0)
    os.close(write_end)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        finished, _ = os.waitpid(child, os.WNOHANG)
        if finished:
            break
        time.sleep(0.1)
    else:
        os.kill(child, 9)
        os.waitpid(child, 0)
        print("timed out")
        raise SystemExit(0)
    print(os.read(read_end, 1 << 20).decode())
    """)


def test_onnx_predicts_in_forked_child(exported):
    completed = subprocess.run(
        [sys.executable, "-c", FORK_SCRIPT, str(exported), json.dumps(REVIEWS * 5)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
        timeout=120,
    )
    lines = completed.stdout.splitlines()

    assert lines[1] != "timed out"
    # Empty reviews score NaN, which assert_array_equal counts as equal.
    np.testing.assert_array_equal(json.loads(lines[1]), json.loads(lines[0]))


# Installed as sitecustomize.py: sends the process the signal named in
# SIGNAL_DURING_IMPORT from within onnxruntime's native start-up, at the first
# import that the extension module makes. Python raises KeyboardInterrupt
# there, which the extension turns into an ImportError.
SIGNAL_HOOK = textwrap.dedent("""
    import builtins
    import importlib.abc
    import os
    import signal
    import sys

    EXTENSION = "onnxruntime.capi.onnxruntime_pybind11_state"
    state = {"loading": False, "sent": False}

    class WatchExtension(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == EXTENSION:
                state["loading"] = True
            return None

    sys.meta_path.insert(0, WatchExtension())
    original_import = builtins.__import__

    def signalling_import(name, *args, **kwargs):
        if state["loading"] and not state["sent"] and name != EXTENSION:
            state["sent"] = True
            os.kill(os.getpid(), getattr(signal, os.environ["SIGNAL_DURING_IMPORT"]))
        return original_import(name, *args, **kwargs)

    builtins.__import__ = signalling_import
    """)


@pytest.mark.parametrize(
    ("command", "signal_name", "status"),
    [
        (["predict", "--model", "{model}", "a fine film"], "SIGINT", 130),
        (["predict", "--model", "{model}", "a fine film"], "SIGTERM", 143),
        (["export", "--model", "{model}"], "SIGTERM", 143),
        (["serve", "--model", "{model}", "--port", "{port}"], "SIGTERM", 143),
    ],
    ids=["predict Ctrl-C", "predict SIGTERM", "export", "serve"],
)
def test_signal_during_onnxruntime_import(
    exported, tmp_path, command, signal_name, status
):
    model = tmp_path / "model"
    shutil.copytree(exported, model)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SIGNAL_HOOK)
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(hook), str(REPO_ROOT / "src")]),
        "SIGNAL_DURING_IMPORT": signal_name,
    }
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    arguments = [part.format(model=model, port=port) for part in command]

    completed = subprocess.run(
        [sys.executable, "-m", "sentiment_lstm", *arguments],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        # Start-up in a shell that leaves Ctrl-C to Python, as a terminal does.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        timeout=120,
    )

    # Neither a fallback to PyTorch nor advice to install onnxruntime.
    assert completed.returncode == status, completed.stderr
    assert "failed to import" not in completed.stderr
    assert "PyTorch scores" not in completed.stderr
    assert "positive" not in completed.stdout
    assert "Application startup complete" not in completed.stderr


# A child process that cannot import PyTorch or the training code.
BLOCKED_SCRIPT = textwrap.dedent("""
    import importlib.abc
    import json
    import sys

    BLOCKED = {blocked!r}

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if any(name == b or name.startswith(b + ".") for b in BLOCKED):
                raise ImportError(f"{{name}} is blocked in this test")
            return None

    sys.meta_path.insert(0, Block())

    from sentiment_lstm.predictor import SentimentModel

    try:
        model = SentimentModel.load(sys.argv[1], backend=sys.argv[2])
    except ImportError as err:
        print(json.dumps({{"import_error": str(err)}}))
        raise SystemExit(0)
    reviews = json.loads(sys.argv[3])
    scores = model.predict_proba(reviews).tolist()
    loaded = sorted(
        name for name in sys.modules
        if any(name == b or name.startswith(b + ".") for b in BLOCKED)
    )
    print(json.dumps({{"backend": model.backend.name, "scores": scores, "loaded": loaded}}))
    """)


def run_blocked(directory: Path, backend: str, blocked: list[str]) -> dict:
    script = BLOCKED_SCRIPT.format(blocked=blocked)
    completed = subprocess.run(
        [sys.executable, "-c", script, str(directory), backend, json.dumps(REVIEWS)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
    )
    return json.loads(completed.stdout)


TORCH_AND_TRAINING = [
    "torch",
    "sentiment_lstm.model",
    "sentiment_lstm.training",
    "sentiment_lstm.pipeline",
    "sentiment_lstm.export",
]


def test_onnx_predicts_without_torch(exported):
    expected = SentimentModel.load(exported, backend="torch").predict_proba(REVIEWS)

    result = run_blocked(exported, "auto", TORCH_AND_TRAINING)
    scores = np.array([np.nan if s is None else s for s in result["scores"]])

    assert result["backend"] == "onnx"
    assert result["loaded"] == []
    assert np.allclose(scores, expected, atol=1e-5, equal_nan=True)


def test_torch_backend_without_torch(exported):
    result = run_blocked(exported, "torch", ["torch"])

    assert "PyTorch" in result["import_error"]


def test_auto_without_onnxruntime(exported):
    result = run_blocked(exported, "auto", ["onnxruntime"])

    assert result["backend"] == "torch"


def test_onnx_without_onnxruntime(exported):
    result = run_blocked(exported, "onnx", ["onnxruntime"])

    assert "pip install" in result["import_error"]


def test_cli_backends_agree(exported, capsys):
    outputs = {}
    for backend in ("onnx", "torch"):
        status = main(
            [
                "predict",
                "--model",
                str(exported),
                "--backend",
                backend,
                "--format",
                "jsonl",
            ]
            + REVIEWS[:2]
        )
        assert status == 0
        outputs[backend] = [
            json.loads(line) for line in capsys.readouterr().out.splitlines()
        ]

    for onnx_row, torch_row in zip(outputs["onnx"], outputs["torch"]):
        assert onnx_row["positive"] == pytest.approx(torch_row["positive"], abs=1e-5)


def test_cli_onnx_missing(unexported, capsys):
    status = main(["predict", "--model", str(unexported), "--backend", "onnx", "good"])

    assert status == 1
    assert "sentiment-lstm export" in capsys.readouterr().err


def test_cli_evaluate_backend(exported, tmp_path, capsys):
    (tmp_path / "tiny.pos").write_text("\n".join(POSITIVE_REVIEWS) + "\n")
    (tmp_path / "tiny.neg").write_text("\n".join(NEGATIVE_REVIEWS) + "\n")
    reports = {}
    for backend in ("onnx", "torch"):
        status = main(
            ["evaluate", "--model", str(exported), "--data", str(tmp_path / "tiny.pos")]
            + ["--backend", backend, "--format", "json"]
        )
        assert status == 0
        reports[backend] = json.loads(capsys.readouterr().out)

    assert reports["onnx"]["accuracy"] == reports["torch"]["accuracy"]
    assert reports["onnx"]["roc_auc"] == pytest.approx(reports["torch"]["roc_auc"])


def test_cli_predict_imports_light(exported):
    script = textwrap.dedent("""
        import sys
        from sentiment_lstm.cli import main
        status = main(["predict", "--model", sys.argv[1], "one review"])
        print("MODULES", "torch" in sys.modules, "tqdm" in sys.modules)
        raise SystemExit(status)
        """)
    completed = subprocess.run(
        [sys.executable, "-c", script, str(exported)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
    )

    assert "MODULES False False" in completed.stdout


# ONNX Runtime records no telemetry where one of these variables marks a CI job.
CI_VARIABLES = (
    "CI",
    "TF_BUILD",
    "GITHUB_ACTIONS",
    "GITLAB_CI",
    "CIRCLECI",
    "TRAVIS",
    "JENKINS_URL",
    "CODEBUILD_BUILD_ID",
    "BUILDKITE",
    "TEAMCITY_VERSION",
    "APPVEYOR",
    "BITBUCKET_BUILD_NUMBER",
)


def _predict_in_fresh_home(model_dir: Path, home: Path, **env: str) -> None:
    """Run ``predict`` in a child process whose home and cache are ``home``.

    The child gets no CI variables, so that ONNX Runtime acts as on a user's
    machine.
    """
    left_out = {"ORT_DISABLE_TELEMETRY", "XDG_CACHE_HOME", *CI_VARIABLES}
    child_env = {key: value for key, value in os.environ.items() if key not in left_out}
    child_env.update(HOME=str(home), **env)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "sentiment_lstm",
            "predict",
            "--model",
            str(model_dir),
            "--backend",
            "onnx",
            "a fine film",
        ],
        check=True,
        env=child_env,
        capture_output=True,
    )


def _files_under(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def test_onnx_runtime_telemetry_off_by_default(exported, tmp_path):
    home = tmp_path / "home"
    home.mkdir()

    _predict_in_fresh_home(exported, home)

    assert _files_under(home) == []


def _onnxruntime_version() -> tuple[int, ...]:
    import onnxruntime

    return tuple(int(part) for part in onnxruntime.__version__.split(".")[:2])


@pytest.mark.skipif(
    _onnxruntime_version() < (1, 29),
    reason="ONNX Runtime records telemetry on Linux from 1.29 on",
)
def test_onnx_runtime_telemetry_left_to_user(exported, tmp_path):
    home = tmp_path / "home"
    home.mkdir()

    _predict_in_fresh_home(exported, home, ORT_DISABLE_TELEMETRY="0")

    # ONNX Runtime keeps its telemetry device id in the home folder
    assert any(name.endswith("deviceid") for name in _files_under(home))
