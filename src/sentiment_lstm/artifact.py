"""Writing and reading the model directory.

A model directory holds only data, never pickled code:

- ``config.json``: format version, label names, model hyperparameters, and
  the SHA-256 of the weights and text encoder files saved with them, and of
  ``model.onnx`` once ``sentiment-lstm export`` has written it;
- ``model.safetensors``: the weights;
- ``tokenizer.json`` and ``text_encoder.json``: the text encoder;
- ``training.json``: how the model was made (data fingerprint, split sizes,
  hyperparameters, per-epoch metrics, package versions).

This module imports no PyTorch, so serving installs can read a model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shlex
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file, save_file

from sentiment_lstm import interrupts
from sentiment_lstm.files import (
    DEFAULT_FILE_MODE,
    file_sha256,
    folder_locked,
    write_text_atomic,
)
from sentiment_lstm.text import CONFIG_FILENAME as ENCODER_CONFIG_FILENAME
from sentiment_lstm.text import TOKENIZER_FILENAME, TextEncoder, TextEncoderError

logger = logging.getLogger(__name__)

ARTIFACT_FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
METADATA_FILE = "training.json"
# Sections of training.json that the server's /info and evaluate --split read
# as JSON objects.
METADATA_SECTIONS = ("data", "history", "split", "training")
ONNX_FILE = "model.onnx"
# Every file that a model folder may contain; metrics.json is written by
# training beside the model.
MODEL_FILE_NAMES = frozenset(
    (
        CONFIG_FILE,
        WEIGHTS_FILE,
        METADATA_FILE,
        ONNX_FILE,
        TOKENIZER_FILENAME,
        ENCODER_CONFIG_FILENAME,
        "metrics.json",
    )
)
# Key of config.json that maps the weights, text encoder and ONNX files to
# their SHA-256. Models saved before it was added lack it and are not checked,
# and models exported before model.onnx was added to it lack that entry.
FILES_KEY = "files"
# Key of model.safetensors' metadata that contains the SHA-256 of the network
# settings in config.json, which the weights' shapes do not fix (the pooling,
# for one). Weights saved before it was added lack it and are not checked.
WEIGHTS_SETTINGS_KEY = "sentiment_lstm.model_sha256"
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class ArtifactError(ValueError):
    """A model directory is missing, incomplete or corrupt."""


@dataclass(frozen=True)
class ArtifactConfig:
    """The contents of ``config.json``."""

    model: dict[str, Any]
    labels: tuple[str, ...]
    format_version: int = ARTIFACT_FORMAT_VERSION
    # File name to the SHA-256 it was saved with; None for older models.
    files: dict[str, str] | None = None


def save_artifact(
    directory: Path,
    *,
    config: ArtifactConfig,
    encoder: TextEncoder,
    weights: dict[str, np.ndarray],
    metadata: dict[str, Any],
) -> None:
    """Write a complete model directory, replacing any model already there.

    Each file is written under a temporary name and then renamed, so an
    interrupted save leaves either the old file or the new one. A Ctrl-C
    under the command line waits until all files are renamed.

    Args:
        directory: Created if missing.
        config: Hyperparameters and labels.
        encoder: The text encoder the model was trained with.
        weights: Parameter name to array.
        metadata: JSON-serialisable facts about the run.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory, prefix=".saving-") as staging:
        staging_path = Path(staging)
        encoder.save(staging_path)
        save_file(
            {name: np.ascontiguousarray(array) for name, array in weights.items()},
            str(staging_path / WEIGHTS_FILE),
            metadata={WEIGHTS_SETTINGS_KEY: model_settings_sha256(config.model)},
        )
        config_values = {
            "format_version": config.format_version,
            "labels": list(config.labels),
            "model": config.model,
            # The weights and the encoder, written above, must stay together.
            FILES_KEY: {
                written.name: file_sha256(written)
                for written in sorted(staging_path.iterdir())
            },
        }
        _write_json(staging_path / CONFIG_FILE, config_values)
        _write_json(staging_path / METADATA_FILE, metadata)
        # A Ctrl-C waits until every file is in place, so that the folder
        # never mixes the new weights with the old settings.
        with interrupts.deferred():
            for written in staging_path.iterdir():
                # safetensors writes owner-only files; give them the usual mode
                os.chmod(written, DEFAULT_FILE_MODE)
                os.replace(written, directory / written.name)
            # A model.onnx left from an earlier model would no longer match
            # the weights.
            stale_onnx = directory / ONNX_FILE
            if stale_onnx.exists():
                stale_onnx.unlink()
                logger.warning(
                    "removed %s, which was exported from the model this one "
                    "replaces; run 'sentiment-lstm export --model %s' to export "
                    "the new one",
                    stale_onnx,
                    shlex.quote(str(directory)),
                )


def model_settings_sha256(model: dict[str, Any]) -> str:
    """Return the hex SHA-256 of the network settings of ``config.json``."""
    canonical = json.dumps(model, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def check_model_settings(
    directory: Path, config: ArtifactConfig, problem: str | None = None
) -> None:
    """Raise if the network settings differ from those the weights were saved with.

    A setting that changes no weight shape, such as the pooling, would
    otherwise run the weights in another network without an error.

    Args:
        directory: The model directory.
        config: Its ``config.json``.
        problem: What is wrong with the settings, if known, such as an
            invalid value; the message includes it.

    Raises:
        ArtifactError: If the settings differ, or the weights file is corrupt.
    """
    path = _require_file(directory, WEIGHTS_FILE)
    _check_readable(path)
    try:
        with safe_open(str(path), framework="np") as weights:
            recorded = (weights.metadata() or {}).get(WEIGHTS_SETTINGS_KEY)
    except (SafetensorError, OSError, ValueError) as err:
        raise _corrupt_weights_error(path, err) from err
    if recorded is not None and recorded != model_settings_sha256(config.model):
        found = f" ({problem})" if problem else ""
        raise ArtifactError(
            f'{Path(directory) / CONFIG_FILE}: its network settings ("model") '
            f"differ from those that {path} was saved with{found}, so the "
            "weights would run in another network; restore config.json from "
            "the model's original folder, or retrain"
        )


def load_config(directory: Path) -> ArtifactConfig:
    """Read ``config.json``.

    Raises:
        ArtifactError: If the directory or file is missing, is not valid JSON,
            or comes from an unsupported format version.
    """
    path = _require_directory(directory) / CONFIG_FILE
    if not os.path.lexists(path):
        model_files = (WEIGHTS_FILE, ONNX_FILE)
        if not any(os.path.lexists(Path(directory) / name) for name in model_files):
            # checkpoint.pt, or checkpoint-member<N>.pt for ensemble members
            if folder_locked(Path(directory)):
                raise ArtifactError(
                    f"{directory} is the --output-dir of a 'sentiment-lstm "
                    "train' run in progress that has not saved a model yet; "
                    "wait until it saves one (after an epoch that reaches its "
                    "--required-acc-checkpoint), or pass the --output-dir of a "
                    "run that saved a model"
                )
            if any(Path(directory).glob("checkpoint*.pt")):
                raise ArtifactError(
                    f"{directory} contains the checkpoint of a 'sentiment-lstm "
                    "train' run and no model: the run was interrupted, or no "
                    "epoch reached its --required-acc-checkpoint; repeat its "
                    "train command with --resume (and a lower "
                    "--required-acc-checkpoint in the second case), or pass the "
                    "--output-dir of a run that saved a model"
                )
            raise ArtifactError(
                f"{directory} is not a sentiment-lstm model directory: it has "
                f"none of {CONFIG_FILE}, {WEIGHTS_FILE} and {ONNX_FILE}; pass "
                "the --output-dir of a finished 'sentiment-lstm train' run"
            )
    values = _read_json(_require_file(directory, CONFIG_FILE))
    version = values.get("format_version")
    if version is None:
        raise ArtifactError(
            f"{path} is not the config of a sentiment-lstm model (it has no "
            f"format_version), so {directory} is another tool's folder or a "
            "damaged one; pass the --output-dir of a finished 'sentiment-lstm "
            "train' run"
        )
    if version != ARTIFACT_FORMAT_VERSION:
        raise ArtifactError(
            f"{path}: format version {json.dumps(version)} is not supported "
            f"(this sentiment-lstm reads version {ARTIFACT_FORMAT_VERSION}); "
            "retrain the model or install the matching sentiment-lstm version"
        )
    model = values.get("model")
    labels = values.get("labels")
    if not isinstance(model, dict):
        raise ArtifactError(f"{path}: missing the 'model' object")
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise ArtifactError(f"{path}: 'labels' must be a list of label names")
    # Training gives output 0 to negative reviews and output 1 to positive ones.
    classes = model.get("num_classes", 2)
    if labels != ["negative", "positive"] or classes != 2:
        raise ArtifactError(
            f"{path}: expected labels ['negative', 'positive'] for a network of "
            f"2 outputs, got labels {labels} and num_classes {classes!r}; copy "
            "the model folder again or retrain"
        )
    return ArtifactConfig(
        model=model,
        labels=tuple(labels),
        format_version=version,
        files=_read_file_digests(values, path),
    )


def _read_file_digests(values: dict[str, Any], path: Path) -> dict[str, str] | None:
    """Return the ``files`` entry of config.json, or None where it is absent."""
    files = values.get(FILES_KEY)
    if files is None:
        return None
    valid = isinstance(files, dict) and all(
        isinstance(name, str)
        and name == Path(name).name
        and name not in ("", ".", "..")
        and isinstance(digest, str)
        and _SHA256_HEX.fullmatch(digest)
        for name, digest in files.items()
    )
    if not valid:
        raise ArtifactError(
            f"{path}: '{FILES_KEY}' must map file names of the model folder to "
            "SHA-256 digests; copy the model folder again or retrain"
        )
    return files


def check_saved_files(
    directory: Path, config: ArtifactConfig, *, skip: tuple[str, ...] = ()
) -> None:
    """Check the model's files against the SHA-256 recorded in ``config.json``.

    A file that is absent is not checked. A deployment that scores with
    ``model.onnx`` may leave out the weights, and the loaders report the
    files they need.

    Args:
        directory: The model directory.
        config: Its ``config.json``.
        skip: Names of files not to check, such as ``model.onnx`` where the
            caller does not read it.

    Raises:
        ArtifactError: If a file differs from the one saved with the model,
            because it was edited or copied from another model.
    """
    directory = Path(directory)
    for name, digest in (config.files or {}).items():
        path = directory / name
        if name in skip or not path.is_file() or file_sha256(path) == digest:
            continue
        if name == ONNX_FILE:
            written_by = "'sentiment-lstm export' wrote"
            fix = f"run 'sentiment-lstm export --model {directory}' again"
        else:
            written_by = "saved with this model"
            fix = "copy the whole model folder again, or retrain"
        raise ArtifactError(
            f"{path} is not the file {written_by}: its SHA-256 differs from the "
            f"one in {directory / CONFIG_FILE}, so it was changed or copied from "
            f"another model; {fix}"
        )


# Files whose SHA-256 a model saved and exported by this version records.
DIGESTED_FILES = (WEIGHTS_FILE, TOKENIZER_FILENAME, ENCODER_CONFIG_FILENAME, ONNX_FILE)


def unchecked_files(directory: Path, config: ArtifactConfig) -> list[str]:
    """Return the names of the model's files present without a recorded SHA-256."""
    recorded = config.files or {}
    return [
        name
        for name in DIGESTED_FILES
        if name not in recorded and (Path(directory) / name).is_file()
    ]


def record_file_digest(directory: Path, name: str, digest: str) -> None:
    """Add or replace one file's SHA-256 in ``config.json``.

    ``config.json`` is replaced through a temporary file, so an interrupted
    update leaves the old one, and keeps its permissions.

    Raises:
        ArtifactError: If ``config.json`` is missing or not a JSON object.
        OSError: If it cannot be written.
    """
    path = _require_file(directory, CONFIG_FILE)
    values = _read_json(path)
    values[FILES_KEY] = {**(values.get(FILES_KEY) or {}), name: digest}
    mode = stat.S_IMODE(path.stat().st_mode)
    write_text_atomic(path, _json_text(values), mode)


def load_encoder(directory: Path) -> TextEncoder:
    """Read the text encoder, naming the missing or corrupt file on failure."""
    directory = _require_directory(directory)
    for name in (ENCODER_CONFIG_FILENAME, TOKENIZER_FILENAME):
        _require_file(directory, name)
    if _encoder_kind(directory) == "wordpiece":
        # models trained on MiniLM's WordPiece tokens (--embeddings minilm)
        from sentiment_lstm.embeddings import EmbeddingError, WordPieceEncoder

        try:
            return WordPieceEncoder.load(directory)
        except EmbeddingError as err:
            raise ArtifactError(str(err)) from err
    try:
        return TextEncoder.load(directory)
    except TextEncoderError as err:
        raise ArtifactError(
            f"{err}; a model folder needs every file that 'sentiment-lstm "
            "train' wrote, so copy the whole folder again or retrain"
        ) from err


def load_matching_encoder(directory: Path, config: ArtifactConfig) -> TextEncoder:
    """Read the text encoder and check that it belongs to the saved network.

    The network's embedding has one row per vocabulary entry, so a tokenizer
    copied from another model shows as a different vocabulary size.

    Raises:
        ArtifactError: If the encoder is missing or corrupt, or its vocabulary
            size is not the ``vocab_size`` in ``config.json``.
    """
    # The recorded digests name an edited or swapped encoder file. They are
    # checked first, because the loader's own checks may blame the other file
    # of the pair, or warn about a pipeline that the edit changed.
    check_saved_files(directory, config, skip=(WEIGHTS_FILE, METADATA_FILE, ONNX_FILE))
    encoder = load_encoder(directory)
    expected = config.model.get("vocab_size")
    if expected is not None and encoder.vocab_size != expected:
        if (Path(directory) / WEIGHTS_FILE).is_file():
            # An edited vocab_size in config.json is named as such.
            check_model_settings(directory, config)
        raise ArtifactError(
            f"the tokenizer in {directory} has {encoder.vocab_size} entries, but "
            f"{directory / CONFIG_FILE} expects {expected}: the tokenizer files "
            "belong to another model; copy the whole model folder again, or "
            "retrain with 'sentiment-lstm train'"
        )
    return encoder


def _encoder_kind(directory: Path) -> str | None:
    path = directory / "text_encoder.json"
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        # the TextEncoder loader reports a missing or corrupt file by name
        return None
    return values.get("kind") if isinstance(values, dict) else None


def _corrupt_weights_error(path: Path, err: Exception) -> ArtifactError:
    return ArtifactError(
        f"{path} is corrupt or not a safetensors file ({err}); "
        "retrain or copy the model directory again"
    )


def load_weights(directory: Path) -> dict[str, np.ndarray]:
    """Read ``model.safetensors`` as NumPy arrays, rejecting NaN or infinity.

    A network with such a weight outputs NaN, which predict would report as
    an empty review.
    """
    path = _require_file(directory, WEIGHTS_FILE)
    _check_readable(path)
    try:
        weights = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise _corrupt_weights_error(path, err) from err
    for name, values in weights.items():
        if not np.issubdtype(values.dtype, np.floating):
            continue
        non_finite = int(np.count_nonzero(~np.isfinite(values)))
        if non_finite:
            raise ArtifactError(
                f"{path}: tensor {name!r} has {non_finite} of {values.size} "
                "values NaN or infinite, so the weights are corrupt; retrain "
                "or copy the model directory again"
            )
    return weights


def load_metadata(directory: Path) -> dict[str, Any]:
    """Read ``training.json``.

    Raises:
        ArtifactError: If the file is missing or not a JSON object, or one of
            ``METADATA_SECTIONS`` is there but not a JSON object.
    """
    path = _require_file(directory, METADATA_FILE)
    metadata = _read_json(path)
    for key in METADATA_SECTIONS:
        value = metadata.get(key)
        if value is not None and not isinstance(value, dict):
            raise ArtifactError(
                f"{path}: {key!r} must be a JSON object, found "
                f"{type(value).__name__} {value!r:.60}; copy the whole model "
                "directory again, or retrain"
            )
    return metadata


def model_folder_of(path: Path) -> Path | None:
    """Return the model folder that ``path`` is, or would become, a file of.

    A model folder has ``config.json``, and the folder of an interrupted run a
    checkpoint. A file there under a name that a model or run uses belongs to
    it, even a new one such as ``model.onnx`` before an export. Other names do
    not. A symbolic link is followed, because a write replaces its target.
    """
    target = Path(os.path.realpath(path))
    folder = target.parent
    # checkpoint.pt, or checkpoint-member<N>.pt for ensemble members
    checkpoints = [item for item in folder.glob("checkpoint*.pt") if item.is_file()]
    if not (folder / CONFIG_FILE).is_file() and not checkpoints:
        return None
    is_checkpoint = target.name.startswith("checkpoint") and target.suffix == ".pt"
    if target.name in MODEL_FILE_NAMES or is_checkpoint:
        return folder
    return None


def _require_directory(directory: Path) -> Path:
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ArtifactError(
            f"{directory} is a file, not a model directory; pass the "
            "--output-dir of a finished 'sentiment-lstm train' run"
        )
    if not directory.is_dir():
        raise ArtifactError(
            f"model directory {directory} not found; pass the --output-dir of "
            "a finished 'sentiment-lstm train' run"
        )
    try:
        # A folder without search permission hides its files, which would
        # otherwise read as missing.
        os.stat(directory / CONFIG_FILE)
    except PermissionError as err:
        raise ArtifactError(
            f"cannot read model directory {directory}: {err.strerror}; check "
            "the folder's permissions (chmod u+rx)"
        ) from err
    except OSError:
        pass
    return directory


def _check_readable(path: Path) -> None:
    """Raise an ArtifactError that names the permissions if path cannot be opened.

    safetensors reports such a file as missing.
    """
    try:
        with open(path, "rb"):
            pass
    except PermissionError as err:
        raise ArtifactError(
            f"cannot read {path}: {err.strerror}; check the file's permissions"
        ) from err


def not_a_file_kind(path: Path) -> str:
    """Name what a path that exists but is no regular file is, for messages."""
    if not path.exists():
        return "a broken or looping link"
    if path.is_dir():
        return "a folder"
    return "a pipe, socket or device"


def _require_file(directory: Path, name: str) -> Path:
    path = _require_directory(directory) / name
    if os.path.lexists(path) and not path.is_file():
        raise ArtifactError(
            f"{path} is {not_a_file_kind(path)}, not a regular file; copy the "
            "whole model folder again, or retrain"
        )
    if not path.is_file():
        raise ArtifactError(
            f"{path} is missing; the model directory is incomplete, so retrain "
            "or copy the whole directory again"
        )
    return path


def _read_json(path: Path) -> dict[str, Any]:
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ArtifactError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(values, dict):
        names = {list: "an array", str: "a string", bool: "a boolean"}
        found = "null" if values is None else names.get(type(values), "a number")
        raise ArtifactError(
            f"{path} must hold a JSON object, found {found}; copy the whole "
            "model folder again, or retrain"
        )
    return values


def _write_json(path: Path, values: dict[str, Any]) -> None:
    path.write_text(_json_text(values), encoding="utf-8")


def _json_text(values: dict[str, Any]) -> str:
    return json.dumps(values, indent=2, sort_keys=True, allow_nan=False) + "\n"
