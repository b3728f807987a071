"""Export a saved model to ONNX and check it against PyTorch.

``export_model(directory)`` writes ``directory/model.onnx``: the network in
eval mode with softmax applied inside the graph, inputs ``token_ids`` (int64,
[batch, sequence]) and ``lengths`` (int64, [batch]), output ``probabilities``
(float32, [batch, 2]), dynamic batch and sequence axes and a pinned opset.
Before the file takes its final name, ONNX Runtime and PyTorch score the same
random batches and the export fails if they differ by more than
``PARITY_TOLERANCE``.

This module needs PyTorch, ``onnx`` and ``onnxruntime``. Scoring an exported
model needs only ``onnxruntime`` (see :class:`sentiment_lstm.predictor.OnnxBackend`).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shlex
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from sentiment_lstm import __version__, artifact, interrupts
from sentiment_lstm.extras import install_hint
from sentiment_lstm.files import (
    DEFAULT_FILE_MODE,
    file_mode,
    on_read_only_file_system,
)
from sentiment_lstm.model import FeatureTableLSTM, SentimentLSTM
from sentiment_lstm.onnx_graph import build_onnx_model
from sentiment_lstm.predictor import (
    INPUT_LENGTHS,
    INPUT_TOKEN_IDS,
    METADATA_ENCODER_SHA256,
    METADATA_FORMAT_VERSION,
    METADATA_LABELS,
    METADATA_MODEL_SHA256,
    METADATA_PACKAGE_VERSION,
    METADATA_WEIGHTS_SHA256,
    OUTPUT_PROBABILITIES,
    OnnxBackend,
    TorchBackend,
    encoder_sha256,
    file_sha256,
    import_onnxruntime,
    model_config_sha256,
)

logger = logging.getLogger(__name__)

# Opset 17 runs on every onnxruntime release since 1.13 and has every operator
# the network needs. Raising it changes which runtimes can load the files.
ONNX_OPSET = 17

# Largest absolute difference between PyTorch and ONNX Runtime probabilities
# that the export accepts.
PARITY_TOLERANCE = 1e-5


@dataclass(frozen=True)
class ParityCase:
    """One batch shape of the parity check.

    Attributes:
        name: Label for messages, such as ``"3 x 9 (mixed lengths)"``.
        lengths: Tokens per review; the batch is padded to the longest.
    """

    name: str
    lengths: tuple[int, ...]

    @property
    def shape(self) -> tuple[int, int]:
        """(batch, sequence) of the padded token id array."""
        return len(self.lengths), max(self.lengths)


def _long_batch_lengths() -> tuple[int, ...]:
    # 64 reviews padded to 400 tokens: one full-length review, the rest of
    # seeded random lengths, so that the pooling reads many different steps.
    rng = np.random.default_rng(400)
    return (400, *rng.integers(1, 401, size=63).tolist())


PARITY_CASES = (
    ParityCase("1 x 1", (1,)),
    ParityCase("1 x 7", (7,)),
    ParityCase("3 x 9 (mixed lengths)", (9, 4, 1)),
    ParityCase("64 x 400", _long_batch_lengths()),
)


@dataclass(frozen=True)
class ParityResult:
    """Largest difference between PyTorch and ONNX Runtime on one case.

    Attributes:
        case: The batch that was scored.
        max_abs_difference: Largest absolute difference over all probabilities.
    """

    case: ParityCase
    max_abs_difference: float


@dataclass(frozen=True)
class ExportResult:
    """Output file and checks of one ``export_model`` run.

    Attributes:
        path: The ONNX file.
        opset: ONNX opset of the graph.
        parity: One result per parity case.
        tolerance: The largest difference the parity check accepted.
    """

    path: Path
    opset: int
    parity: tuple[ParityResult, ...]
    tolerance: float


class ExportError(RuntimeError):
    """The model could not be exported to ONNX."""


class ParityError(ExportError):
    """ONNX Runtime and PyTorch scores differ by more than the tolerance.

    Attributes:
        results: The parity result of every case.
        tolerance: The largest difference that was allowed.
    """

    def __init__(
        self, message: str, results: Sequence[ParityResult], tolerance: float
    ) -> None:
        super().__init__(message)
        self.results = tuple(results)
        self.tolerance = tolerance


class ProbabilityModel(nn.Module):
    """A classifier followed by softmax, the graph that ``model.onnx`` holds."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, token_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Return (batch, classes) probabilities for right-padded token ids."""
        return torch.softmax(self.classifier(token_ids, lengths), dim=1)


def export_module(
    module: nn.Module,
    path: str | Path,
    *,
    metadata: dict[str, str] | None = None,
    opset: int = ONNX_OPSET,
) -> None:
    """Write a network with softmax on top to an ONNX file.

    The module is put in eval mode, so dropout is off in the graph, which
    :func:`sentiment_lstm.onnx_graph.build_onnx_model` lays out for fast
    inference.

    Args:
        module: A :class:`sentiment_lstm.model.SentimentLSTM`.
        path: File to write.
        metadata: Entries for the model's ``metadata_props``.
        opset: ONNX opset to export with; 17 or later.

    Raises:
        ExportError: If the module cannot be exported or the ONNX checker
            rejects the graph.
    """
    path = Path(path)
    module.eval()
    if not isinstance(module, SentimentLSTM) or isinstance(module, FeatureTableLSTM):
        raise ExportError(
            f"only a SentimentLSTM with its own embedding can be exported, "
            f"got {type(module).__name__}"
        )
    try:
        proto = build_onnx_model(
            module,
            input_ids=INPUT_TOKEN_IDS,
            input_lengths=INPUT_LENGTHS,
            output=OUTPUT_PROBABILITIES,
            opset=opset,
        )
    except ValueError as err:
        raise ExportError(f"cannot build the ONNX graph: {err}") from err
    proto.producer_name = "sentiment-lstm"
    proto.producer_version = __version__
    proto.doc_string = (
        "LSTM sentiment classifier: probabilities of (negative, positive)"
    )
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key = key
        entry.value = value
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as err:
        raise ExportError(f"the exported graph is not valid ONNX: {err}") from err
    onnx.save(proto, str(path))


def check_parity(
    module: nn.Module,
    onnx_path: str | Path,
    *,
    cases: Sequence[ParityCase] = PARITY_CASES,
    seed: int = 0,
) -> list[ParityResult]:
    """Score random batches with PyTorch and ONNX Runtime and compare them.

    Token ids are drawn uniformly from the whole vocabulary except the padding
    id, and each review is right-padded with ``config.pad_index`` as the
    predictor pads real reviews.

    Args:
        module: The PyTorch classifier that was exported; it must have a
            ``config`` with ``vocab_size`` and ``pad_index``.
        onnx_path: The exported file.
        cases: Batch shapes to compare.
        seed: Seed of the random token ids.

    Returns:
        One result per case, in order.
    """
    backend = OnnxBackend(Path(onnx_path))
    config = module.config
    wrapped = ProbabilityModel(module).eval()
    rng = np.random.default_rng(seed)
    results = []
    for case in cases:
        token_ids, lengths = _random_batch(
            case, config.vocab_size, config.pad_index, rng
        )
        with torch.inference_mode():
            expected = wrapped(torch.from_numpy(token_ids), torch.from_numpy(lengths))
        actual = backend.probabilities(token_ids, lengths)
        difference = float(np.max(np.abs(expected.numpy() - actual)))
        results.append(ParityResult(case, difference))
        logger.debug("parity %s: max abs difference %.3g", case.name, difference)
    return results


def require_parity(
    results: Sequence[ParityResult], tolerance: float = PARITY_TOLERANCE
) -> None:
    """Raise if any parity result exceeds the tolerance.

    Raises:
        ParityError: Naming every case above the tolerance and its difference.
    """
    # "not <=" also fails a NaN difference, which no comparison passes.
    failed = [
        result for result in results if not result.max_abs_difference <= tolerance
    ]
    if not failed:
        return
    details = ", ".join(
        f"{result.case.name}: {result.max_abs_difference:.3g}" for result in failed
    )
    raise ParityError(
        f"ONNX Runtime and PyTorch probabilities differ by more than "
        f"{tolerance:g} ({details})",
        results,
        tolerance,
    )


def export_model(
    directory: str | Path,
    *,
    opset: int = ONNX_OPSET,
    tolerance: float = PARITY_TOLERANCE,
) -> ExportResult:
    """Export a model directory to ``model.onnx`` beside its weights.

    The file is written under a temporary name, checked for parity with
    PyTorch and only then renamed, and its SHA-256 is added to
    ``config.json``. If the export fails, the temporary file is removed and
    an older ``model.onnx`` stays as it was: loading checks its weights
    checksum, so an export of other weights is never used with these.

    Args:
        directory: A model directory written by ``sentiment-lstm train``.
        opset: ONNX opset to export with.
        tolerance: Largest accepted absolute difference in probability.

    Returns:
        The written path, the opset and the parity results.

    Raises:
        ArtifactError: If a file of the model directory is missing or corrupt.
        ExportError: If the export fails.
        ParityError: If the exported graph does not match PyTorch.
    """
    directory = Path(directory)
    try:
        import_onnxruntime()
    except ImportError as err:
        raise ExportError(
            f"the export's parity check needs ONNX Runtime, which failed to import "
            f"({err}); install it with: {install_hint('train')}"
        ) from err
    config = artifact.load_config(directory)
    # model.onnx is of no use without the tokenizer that feeds it
    artifact.load_matching_encoder(directory, config)
    weights = artifact.load_weights(directory)
    # predict and serve load training.json with the model, and reject a
    # folder without it.
    artifact.load_metadata(directory)
    try:
        module = TorchBackend(config.model, weights).module
    except (ValueError, RuntimeError, KeyError) as err:
        # Weights copied from another model are named as such, rather than
        # by PyTorch's list of mismatched shapes.
        artifact.check_saved_files(directory, config, skip=(artifact.ONNX_FILE,))
        # An edited config.json is named as such, where the weights record
        # the settings they were saved with. An invalid setting is quoted,
        # but not PyTorch's list of mismatched shapes.
        invalid = isinstance(err, (ValueError, KeyError))
        artifact.check_model_settings(directory, config, str(err) if invalid else None)
        raise artifact.ArtifactError(
            f"{directory / artifact.WEIGHTS_FILE} does not match "
            f"{directory / artifact.CONFIG_FILE}: {err}"
        ) from err
    # The model.onnx there now, if any, is about to be replaced.
    artifact.check_saved_files(directory, config, skip=(artifact.ONNX_FILE,))
    artifact.check_model_settings(directory, config)
    metadata = {
        METADATA_FORMAT_VERSION: str(config.format_version),
        METADATA_PACKAGE_VERSION: __version__,
        METADATA_LABELS: json.dumps(list(config.labels)),
        METADATA_WEIGHTS_SHA256: file_sha256(directory / artifact.WEIGHTS_FILE),
        METADATA_MODEL_SHA256: model_config_sha256(config),
        METADATA_ENCODER_SHA256: encoder_sha256(directory),
    }
    final_path = directory / artifact.ONNX_FILE
    if final_path.is_dir():
        raise ExportError(
            f"cannot write {final_path}: a folder has that name; move it away"
        )
    mode = _kept_mode(final_path)
    # config.json gets the SHA-256 of the new file, so it is replaced too,
    # and a read-only one is kept as model.onnx is.
    _kept_mode(directory / artifact.CONFIG_FILE)
    try:
        handle, temporary_name = tempfile.mkstemp(
            dir=directory, prefix=".model-", suffix=".onnx.tmp"
        )
    except OSError as err:
        if err.errno == errno.EROFS:
            fix = (
                "the file system is mounted read-only, so copy the model folder "
                "to a writable one and export the copy"
            )
        else:
            fix = (
                f"make the folder writable (chmod u+w "
                f"{shlex.quote(str(directory))}), or export a copy of it that "
                "you make writable"
            )
        raise ExportError(f"cannot write {final_path}: {err.strerror}; {fix}") from err
    os.close(handle)
    temporary = Path(temporary_name)
    try:
        export_module(module, temporary, metadata=metadata, opset=opset)
        results = check_parity(module, temporary)
        require_parity(results, tolerance)
        os.chmod(temporary, mode)
        digest = file_sha256(temporary)
        # Loading compares model.onnx with the SHA-256 in config.json, so a
        # Ctrl-C waits until both are in place.
        with interrupts.deferred():
            os.replace(temporary, final_path)
            artifact.record_file_digest(directory, artifact.ONNX_FILE, digest)
    except OSError as err:
        raise ExportError(f"cannot write {final_path}: {err}") from err
    finally:
        temporary.unlink(missing_ok=True)
    logger.debug("wrote %s (opset %d)", final_path, opset)
    return ExportResult(
        path=final_path, opset=opset, parity=tuple(results), tolerance=tolerance
    )


def _kept_mode(path: Path) -> int:
    """Return the mode for a file that export replaces: that of the old one.

    Raises:
        ExportError: If the file there is read-only to this user, as
            ``predict --output`` rejects one. Root may replace it, as with cp.
    """
    mode = file_mode(path)
    if mode is None:
        return DEFAULT_FILE_MODE
    if not os.access(path, os.W_OK):
        if on_read_only_file_system(path):
            raise ExportError(
                f"cannot replace {path}: the file system is mounted read-only, "
                "so copy the model folder to a writable one and export the copy"
            )
        raise ExportError(
            f"cannot replace {path}: the file is read-only; make it writable "
            f"(chmod u+w {path}) to export again"
        )
    return mode


def _random_batch(
    case: ParityCase, vocab_size: int, pad_index: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    batch, width = case.shape
    lengths = np.asarray(case.lengths, dtype=np.int64)
    token_ids = np.full((batch, width), pad_index, dtype=np.int64)
    for row, length in enumerate(lengths):
        values = rng.integers(0, vocab_size - 1, size=int(length))
        # Shift ids at or above the padding id up by one to skip it.
        values[values >= pad_index] += 1
        token_ids[row, :length] = values
    return token_ids, lengths
