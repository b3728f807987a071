"""ONNX export: graph signature, metadata, parity with PyTorch, the CLI."""

from __future__ import annotations

import errno
import json
import os
import stat
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from sentiment_lstm import __version__, artifact, onnx_graph
from sentiment_lstm import export as export_module_under_test
from sentiment_lstm.cli import main
from sentiment_lstm.export import (
    ONNX_OPSET,
    PARITY_CASES,
    PARITY_TOLERANCE,
    ExportError,
    ParityError,
    ParityResult,
    check_parity,
    export_model,
    export_module,
    require_parity,
)
from sentiment_lstm.extras import install_hint
from sentiment_lstm.model import (
    FeatureTableLSTM,
    ModelConfig,
    SentimentLSTM,
    merge_ensemble,
)
from sentiment_lstm.predictor import (
    METADATA_ENCODER_SHA256,
    METADATA_FORMAT_VERSION,
    METADATA_LABELS,
    METADATA_MODEL_SHA256,
    METADATA_PACKAGE_VERSION,
    METADATA_WEIGHTS_SHA256,
    OnnxBackend,
    encoder_sha256,
    file_sha256,
    model_config_sha256,
)
from tests.conftest import mount_read_only
from tests.test_predictor import write_model_dir

ARCHITECTURES = [
    (bidirectional, num_layers, pooling)
    for bidirectional in (False, True)
    for num_layers in (1, 2)
    for pooling in ("last", "mean")
] + [(False, 3, "max"), (True, 1, "max"), (True, 3, "last")]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Run PyTorch on one thread in this module.

    With two OpenMP threads, a 64 x 400 forward pass took 10 s instead of
    0.3 s whenever other jobs held a core, because the threads wait on each
    other at every LSTM step.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def spread_module(config: ModelConfig, seed: int = 0) -> SentimentLSTM:
    """A module whose weights spread probabilities over (0, 1)."""
    torch.manual_seed(seed)
    module = SentimentLSTM(config)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.normal_(0.0, 0.6)
    return module.eval()


def export_small_model(
    directory: Path, bidirectional: bool, num_layers: int, pooling: str
) -> tuple[SentimentLSTM, Path]:
    """Export a small spread module of the given architecture to model.onnx."""
    config = ModelConfig(
        vocab_size=300,
        embedding_dim=12,
        hidden_dim=10,
        num_layers=num_layers,
        bidirectional=bidirectional,
        pooling=pooling,
    )
    module = spread_module(config)
    path = directory / "model.onnx"
    export_module(module, path)
    return module, path


@pytest.mark.parametrize(
    ("bidirectional", "num_layers", "pooling"),
    ARCHITECTURES,
    ids=[f"{'bi' if b else 'uni'}-{n}-{p}" for b, n, p in ARCHITECTURES],
)
def test_parity(tmp_path, bidirectional, num_layers, pooling):
    module, path = export_small_model(tmp_path, bidirectional, num_layers, pooling)

    results = check_parity(module, path)

    assert [result.case.shape for result in results] == [
        (1, 1),
        (1, 7),
        (3, 9),
        (64, 400),
    ]
    for result in results:
        assert result.max_abs_difference <= PARITY_TOLERANCE, result.case.name


@pytest.mark.parametrize("bidirectional", [False, True])
def test_parity_without_folded_table(tmp_path, monkeypatch, bidirectional):
    # A table over the size limit keeps the embedding and the input weights.
    monkeypatch.setattr(onnx_graph, "MAX_FOLDED_TABLE_BYTES", 0)
    config = ModelConfig(
        vocab_size=300, embedding_dim=12, hidden_dim=10, bidirectional=bidirectional
    )
    module = spread_module(config)
    path = tmp_path / "model.onnx"
    export_module(module, path)
    initializer_shapes = [
        tuple(tensor.dims)
        for tensor in _initializers_with_subgraphs(onnx.load(str(path)).graph)
    ]

    assert (300, 12) in initializer_shapes
    assert (300, 40) not in initializer_shapes
    require_parity(check_parity(module, path))


def test_folded_table_replaces_embedding(tmp_path):
    config = ModelConfig(vocab_size=300, embedding_dim=12, hidden_dim=10)
    module = spread_module(config)
    path = tmp_path / "model.onnx"
    export_module(module, path)
    graph = onnx.load(str(path)).graph
    initializer_shapes = [
        tuple(tensor.dims) for tensor in _initializers_with_subgraphs(graph)
    ]

    # one row of input gates per vocabulary entry and a zero row for the
    # steps before a review, and no embedding
    assert (301, 40) in initializer_shapes
    assert (300, 12) not in initializer_shapes
    assert [node.op_type for node in graph.node].count("Scan") == 1


@pytest.mark.parametrize(
    ("bidirectional", "num_layers", "pooling", "step_outputs"),
    [
        (False, 1, "last", False),
        (True, 1, "last", False),
        (False, 2, "last", True),
        (False, 1, "mean", True),
    ],
)
def test_scan_step_outputs_where_needed(
    tmp_path, bidirectional, num_layers, pooling, step_outputs
):
    # One layer pooled by its last state needs each Scan's final state only.
    _, path = export_small_model(tmp_path, bidirectional, num_layers, pooling)
    scans = [node for node in onnx.load(str(path)).graph.node if node.op_type == "Scan"]

    assert scans
    assert all(len(scan.output) == (3 if step_outputs else 2) for scan in scans)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_final_state_graph_token_id_range(tmp_path, bidirectional):
    # The zero row after the vocabulary is not an id callers can reach: ids
    # behave as in a lookup of the vocabulary's rows alone.
    config = ModelConfig(
        vocab_size=37, embedding_dim=7, hidden_dim=9, bidirectional=bidirectional
    )
    path = tmp_path / "model.onnx"
    export_module(spread_module(config), path)
    session = onnxruntime.InferenceSession(
        str(path), providers=["CPUExecutionProvider"]
    )
    lengths = np.array([3], dtype=np.int64)

    def score(ids: list[int]) -> np.ndarray:
        feed = {"token_ids": np.array([ids], dtype=np.int64), "lengths": lengths}
        return session.run(None, feed)[0]

    assert np.array_equal(score([3, -1, 4]), score([3, 36, 4]))
    assert np.array_equal(score([3, -37, 4]), score([3, 0, 4]))
    for ids in ([3, 37, 4], [3, -38, 4], [3, 5, 4, 37]):
        with pytest.raises(Exception, match="out of data bounds"):
            score(ids)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_final_state_graph_padding_and_lengths(tmp_path, bidirectional):
    # Reviews aligned to the last step: the zero row keeps the state at zero
    # before each review, whatever the padding holds, as in the module.
    config = ModelConfig(
        vocab_size=300, embedding_dim=12, hidden_dim=10, bidirectional=bidirectional
    )
    module = spread_module(config)
    path = tmp_path / "model.onnx"
    export_module(module, path)
    session = onnxruntime.InferenceSession(
        str(path), providers=["CPUExecutionProvider"]
    )
    rng = np.random.default_rng(5)
    token_ids = rng.integers(0, 300, size=(6, 12)).astype(np.int64)
    # 0 counts as 1 and 20 as the width, as in the module
    lengths = np.array([0, 1, 5, 11, 12, 20], dtype=np.int64)
    with torch.no_grad():
        expected = torch.softmax(
            module(torch.from_numpy(token_ids), torch.from_numpy(lengths)), dim=1
        ).numpy()

    (scored,) = session.run(None, {"token_ids": token_ids, "lengths": lengths})
    repadded = token_ids.copy()
    for row, length in enumerate(np.clip(lengths, 1, 12)):
        repadded[row, length:] = rng.integers(0, 300, size=12 - length)
    (repadded_scores,) = session.run(None, {"token_ids": repadded, "lengths": lengths})

    assert np.abs(scored - expected).max() <= PARITY_TOLERANCE
    assert np.array_equal(scored, repadded_scores)


def _initializers_with_subgraphs(graph: onnx.GraphProto) -> list[onnx.TensorProto]:
    """Return the initializers of a graph and of every Scan body in it."""
    found = list(graph.initializer)
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                found += _initializers_with_subgraphs(attribute.g)
    return found


def test_merged_ensemble_parity(tmp_path):
    config = ModelConfig(
        vocab_size=300,
        embedding_dim=12,
        hidden_dim=10,
        bidirectional=True,
        pooling="max",
    )
    members = [spread_module(config, seed) for seed in range(3)]
    merged = merge_ensemble(members)
    path = tmp_path / "model.onnx"
    export_module(merged, path)

    require_parity(check_parity(merged, path))


def test_export_rejects_feature_table_model(tmp_path):
    config = ModelConfig(vocab_size=1, embedding_dim=12, hidden_dim=10)
    module = FeatureTableLSTM(config, torch.zeros(50, 12))

    with pytest.raises(ExportError, match="FeatureTableLSTM"):
        export_module(module, tmp_path / "model.onnx")


def test_parity_cases():
    shapes = [case.shape for case in PARITY_CASES]
    mixed = PARITY_CASES[2].lengths

    assert shapes == [(1, 1), (1, 7), (3, 9), (64, 400)]
    assert len(set(mixed)) == len(mixed)


def test_require_parity_names_case():
    results = [
        ParityResult(PARITY_CASES[0], 1e-7),
        ParityResult(PARITY_CASES[3], 2e-3),
    ]

    with pytest.raises(ParityError) as error:
        require_parity(results, 1e-5)

    assert "64 x 400: 0.002" in str(error.value)
    assert "1 x 1" not in str(error.value)
    assert error.value.results == tuple(results)


def test_require_parity_rejects_nan():
    results = [ParityResult(PARITY_CASES[1], float("nan"))]

    with pytest.raises(ParityError, match="1 x 7: nan"):
        require_parity(results, 1e-5)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A model directory exported once, with the ONNX graph loaded."""
    directory = write_model_dir(tmp_path_factory.mktemp("export") / "model")
    result = export_model(directory)
    return directory, result, onnx.load(str(result.path))


def test_export_writes_file(exported):
    directory, result, _ = exported

    assert result.path == directory / "model.onnx"
    assert result.opset == ONNX_OPSET
    assert len(result.parity) == 4
    assert not list(directory.glob(".model-*"))


def test_graph_signature(exported):
    _, _, graph_model = exported
    inputs = {item.name: item for item in graph_model.graph.input}
    outputs = {item.name: item for item in graph_model.graph.output}

    def dims(value_info):
        return [
            dim.dim_param or dim.dim_value
            for dim in value_info.type.tensor_type.shape.dim
        ]

    assert sorted(inputs) == ["lengths", "token_ids"]
    assert list(outputs) == ["probabilities"]
    assert inputs["token_ids"].type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert inputs["lengths"].type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert dims(inputs["token_ids"]) == ["batch", "sequence"]
    assert dims(inputs["lengths"]) == ["batch"]
    assert dims(outputs["probabilities"])[0] == "batch"


def test_graph_opset(exported):
    _, _, graph_model = exported
    default_domain = [op for op in graph_model.opset_import if op.domain == ""]

    assert default_domain[0].version == ONNX_OPSET


def test_graph_ir_version_minimal(exported):
    _, _, graph_model = exported

    # ONNX Runtime 1.17, the oldest the extras allow, reads IR versions up
    # to 9; opset 17 needs 8.
    assert graph_model.ir_version == 8


def test_too_new_ir_version_named(tmp_path):
    directory = write_model_dir(tmp_path / "model")
    export_model(directory)
    onnx_path = directory / "model.onnx"
    graph_model = onnx.load(str(onnx_path))
    graph_model.ir_version = 99
    onnx.save(graph_model, str(onnx_path))

    with pytest.raises(artifact.ArtifactError) as error:
        OnnxBackend(onnx_path)

    assert f"{onnx_path} is newer than onnxruntime " in str(error.value)
    assert "upgrade onnxruntime, or export the model again" in str(error.value)


def test_graph_has_no_dropout(exported):
    _, _, graph_model = exported
    op_types = {node.op_type for node in graph_model.graph.node}

    assert "Dropout" not in op_types
    assert "Softmax" in op_types


def test_graph_metadata(exported):
    directory, _, graph_model = exported
    metadata = {entry.key: entry.value for entry in graph_model.metadata_props}

    assert metadata[METADATA_FORMAT_VERSION] == str(artifact.ARTIFACT_FORMAT_VERSION)
    assert metadata[METADATA_PACKAGE_VERSION] == __version__
    assert json.loads(metadata[METADATA_LABELS]) == ["negative", "positive"]
    assert metadata[METADATA_WEIGHTS_SHA256] == file_sha256(
        directory / "model.safetensors"
    )
    assert metadata[METADATA_MODEL_SHA256] == model_config_sha256(
        artifact.load_config(directory)
    )
    assert metadata[METADATA_ENCODER_SHA256] == encoder_sha256(directory)


def test_probabilities_sum_to_one(exported):
    directory, _, _ = exported
    session = onnxruntime.InferenceSession(
        str(directory / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    token_ids = np.random.default_rng(3).integers(1, 40, size=(5, 11))
    lengths = np.array([11, 3, 1, 7, 11], dtype=np.int64)

    (probabilities,) = session.run(
        None, {"token_ids": token_ids.astype(np.int64), "lengths": lengths}
    )

    assert probabilities.shape == (5, 2)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)


def test_padding_does_not_change_scores(exported):
    directory, _, _ = exported
    session = onnxruntime.InferenceSession(
        str(directory / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    review = np.array([[5, 9, 2, 14]], dtype=np.int64)
    padded = np.array([[5, 9, 2, 14, 0, 0, 0, 0, 0]], dtype=np.int64)
    length = np.array([4], dtype=np.int64)

    (alone,) = session.run(None, {"token_ids": review, "lengths": length})
    (with_padding,) = session.run(None, {"token_ids": padded, "lengths": length})

    assert np.allclose(alone, with_padding, atol=1e-6)


def test_cli_export(tmp_path, capsys):
    directory = write_model_dir(tmp_path / "model", bidirectional=True)

    status = main(["export", "--model", str(directory)])
    lines = capsys.readouterr().out.splitlines()

    assert status == 0
    assert (directory / "model.onnx").is_file()
    assert [line.split()[1] for line in lines[:4]] == ["1", "1", "3", "64"]
    assert all(line.endswith(" ok") for line in lines[:4])
    assert lines[-1].startswith(f"wrote {directory / 'model.onnx'}")


def test_cli_export_quiet_prints_nothing(tmp_path, capsys):
    directory = write_model_dir(tmp_path / "model")

    status = main(["-q", "export", "--model", str(directory)])
    captured = capsys.readouterr()

    assert status == 0
    assert (directory / "model.onnx").is_file()
    assert captured.out == ""


def test_cli_parity_failure_shown_when_quiet(tmp_path, capsys, monkeypatch):
    directory = write_model_dir(tmp_path / "model")

    def diverging(module, onnx_path, **kwargs):
        return [ParityResult(case, 0.25) for case in PARITY_CASES]

    monkeypatch.setattr(export_module_under_test, "check_parity", diverging)
    status = main(["export", "-q", "--model", str(directory)])
    captured = capsys.readouterr()

    assert status == 1
    assert captured.out.count("FAILED") == 4


def test_cli_export_replaces_file(tmp_path):
    directory = write_model_dir(tmp_path / "model")
    (directory / "model.onnx").write_bytes(b"an older export")

    status = main(["export", "--model", str(directory)])

    assert status == 0
    assert onnx.load(str(directory / "model.onnx")).graph.input


def test_export_keeps_config_permissions(tmp_path):
    directory = write_model_dir(tmp_path / "model")
    config_path = directory / "config.json"
    config_path.chmod(0o600)

    export_model(directory)

    assert stat.S_IMODE(config_path.stat().st_mode) == 0o600
    assert "model.onnx" in json.loads(config_path.read_text())["files"]


def test_cli_parity_failure(tmp_path, capsys, monkeypatch):
    directory = write_model_dir(tmp_path / "model")
    (directory / "model.onnx").write_bytes(b"an older export")

    def diverging(module, onnx_path, **kwargs):
        return [ParityResult(case, 0.25) for case in PARITY_CASES]

    monkeypatch.setattr(export_module_under_test, "check_parity", diverging)
    status = main(["export", "--model", str(directory)])
    captured = capsys.readouterr()

    assert status == 1
    assert "differ by more than 1e-05" in captured.err
    assert "no new model.onnx was written" in captured.err
    assert captured.out.count("FAILED") == 4
    assert (directory / "model.onnx").read_bytes() == b"an older export"
    assert not list(directory.glob(".model-*"))


def test_cli_export_without_onnxruntime(tmp_path, capsys, monkeypatch):
    directory = write_model_dir(tmp_path / "model")
    (directory / "model.onnx").write_bytes(b"an older export")
    # None in sys.modules makes the import raise ImportError.
    monkeypatch.setitem(sys.modules, "onnxruntime", None)

    status = main(["export", "--model", str(directory)])
    error = capsys.readouterr().err

    assert status == 1
    assert "needs ONNX Runtime" in error
    assert install_hint("train") in error
    assert "Traceback" not in error
    assert (directory / "model.onnx").read_bytes() == b"an older export"


def test_cli_export_onnx_path_is_folder(tmp_path, capsys):
    directory = write_model_dir(tmp_path / "model")
    (directory / "model.onnx").mkdir()

    status = main(["export", "--model", str(directory)])

    assert status == 1
    assert "a folder has that name" in capsys.readouterr().err
    assert not list(directory.glob(".model-*"))


def test_cli_export_read_only_folder(tmp_path, capsys, monkeypatch):
    directory = write_model_dir(tmp_path / "model")

    def deny_permission(**kwargs):
        raise PermissionError(13, "Permission denied", str(kwargs["dir"]))

    # The tests may run as root, which can write to any folder.
    monkeypatch.setattr(export_module_under_test.tempfile, "mkstemp", deny_permission)
    status = main(["export", "--model", str(directory)])
    error = capsys.readouterr().err

    assert status == 1
    assert f"cannot write {directory / 'model.onnx'}: Permission denied" in error
    assert "chmod u+w" in error
    assert "Traceback" not in error


def test_cli_export_read_only_file_system(tmp_path, capsys, monkeypatch):
    directory = write_model_dir(tmp_path / "model")

    def read_only(**kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(kwargs["dir"]))

    monkeypatch.setattr(export_module_under_test.tempfile, "mkstemp", read_only)
    status = main(["export", "--model", str(directory)])
    error = capsys.readouterr().err

    assert status == 1
    assert "Read-only file system" in error
    assert "copy the model folder to a writable one" in error
    assert "chmod" not in error


def test_cli_export_on_read_only_mount(tmp_path, capsys, monkeypatch):
    # A file on a read-only mount fails os.access(W_OK) whatever its mode.
    directory = write_model_dir(tmp_path / "model")
    onnx_path = directory / "model.onnx"
    onnx_path.write_bytes(b"an older export")
    mount_read_only(monkeypatch, onnx_path)
    status = main(["export", "--model", str(directory)])
    error = capsys.readouterr().err

    assert status == 1
    assert "the file system is mounted read-only" in error
    assert "copy the model folder to a writable one" in error
    assert "chmod" not in error
    assert onnx_path.read_bytes() == b"an older export"


def test_cli_export_missing_model(tmp_path, capsys):
    status = main(["export", "--model", str(tmp_path / "nowhere")])

    assert status == 1
    assert "nowhere" in capsys.readouterr().err


def test_cli_export_corrupt_weights(tmp_path, capsys):
    directory = write_model_dir(tmp_path / "model")
    (directory / "model.safetensors").write_bytes(b"not safetensors")

    status = main(["export", "--model", str(directory)])

    assert status == 1
    assert "model.safetensors" in capsys.readouterr().err
    assert not (directory / "model.onnx").exists()


@pytest.mark.parametrize("name", ["training.json", "tokenizer.json"])
def test_cli_export_incomplete_model_folder(tmp_path, capsys, name):
    directory = write_model_dir(tmp_path / "model")
    (directory / name).unlink()

    status = main(["export", "--model", str(directory)])
    error = capsys.readouterr().err

    # The message that predict and serve give for the same folder.
    assert status == 1
    assert f"{directory / name} is missing; the model directory is incomplete" in (
        error
    )
    assert "TextEncoder.save" not in error
    assert not (directory / "model.onnx").exists()


def test_export_keeps_replaced_file_mode(tmp_path):
    directory = write_model_dir(tmp_path / "model")
    onnx_path = directory / "model.onnx"
    onnx_path.write_bytes(b"an older export")
    onnx_path.chmod(0o640)

    status = main(["export", "--model", str(directory)])

    assert status == 0
    assert stat.S_IMODE(onnx_path.stat().st_mode) == 0o640
    assert onnx.load(str(onnx_path)).graph.input


@pytest.mark.skipif(os.geteuid() == 0, reason="root may replace read-only files")
@pytest.mark.parametrize("name", ["model.onnx", "config.json"])
def test_cli_export_read_only_file(tmp_path, capsys, name):
    directory = write_model_dir(tmp_path / "model")
    onnx_path = directory / "model.onnx"
    onnx_path.write_bytes(b"an older export")
    before = (directory / name).read_bytes()
    (directory / name).chmod(0o444)

    status = main(["export", "--model", str(directory)])

    assert status == 1
    assert (
        f"cannot replace {directory / name}: the file is read-only; make it " "writable"
    ) in capsys.readouterr().err
    assert (directory / name).read_bytes() == before
    assert onnx_path.read_bytes() == b"an older export"


def test_export_waits_for_no_train_run(tmp_path, capsys):
    import fcntl

    directory = write_model_dir(tmp_path / "model")
    # A train run holds this lock on its --output-dir while it runs.
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        status = main(["export", "--model", str(directory)])
    finally:
        os.close(descriptor)
    err = capsys.readouterr().err

    assert status == 1
    assert f"{directory} is in use by another sentiment-lstm process" in err
    assert not (directory / "model.onnx").exists()
    assert main(["-q", "export", "--model", str(directory)]) == 0
    assert (directory / "model.onnx").is_file()
