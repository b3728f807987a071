"""The output folder of ``train``: checked before training, tidied after a failure.

``train`` creates and test-writes its folder before it reads any data, so an
unwritable path fails at once instead of after an epoch. Folders that the run
created and left empty are removed again, and an interrupted run reports
what it saved and how to continue.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sentiment_lstm import interrupts
from sentiment_lstm.cli.common import CommandError

# Files that train --resume continues from: checkpoint.pt of a single network,
# checkpoint-member<N>.pt of ensemble members.
CHECKPOINT_PATTERN = "checkpoint*.pt"

# Files of a model directory that a run replaces. Other tools use some of
# these names too, such as the config.json and tokenizer.json of a Hugging
# Face model.
MODEL_FILES = (
    "config.json",
    "metrics.json",
    "model.onnx",
    "model.safetensors",
    "text_encoder.json",
    "tokenizer.json",
    "training.json",
)

_FIXES_BY_ERRNO = {
    errno.EACCES: "choose a folder you can write to, or change its permissions",
    errno.EPERM: "choose a folder you can write to, or change its permissions",
    errno.EROFS: "choose a folder on a writable disk",
    errno.ENOSPC: "free some space, or choose a folder on another disk",
    errno.EDQUOT: "free some space, or choose a folder on another disk",
    errno.ENAMETOOLONG: "use a shorter folder name",
}


def prepare_output_dir(path: Path, created: list[Path] | None = None) -> list[Path]:
    """Create ``path`` where missing and check that a file can be written in it.

    Args:
        path: The ``--output-dir`` of the run.
        created: A list to record the created folders in as they are made.
            A caller that cleans up after an interrupt passes its own, which
            is complete whenever the interrupt comes.

    Returns:
        The folders this call created, outermost first, so that
        :func:`remove_empty_folders` can undo them.

    Raises:
        CommandError: If a part of the path is a file, the folder contains
            files of a model directory but no sentiment-lstm model, or the
            folder cannot be created or written. The message names the path,
            the reason and a fix.
    """
    _check_no_other_model(path)
    blocking = _file_in_path(path)
    if blocking == path:
        raise CommandError(
            f"--output-dir {path} is a file, not a folder; name a new or "
            "existing folder",
            usage=True,
        )
    if blocking is not None:
        raise CommandError(
            f"--output-dir {path}: {blocking} is a file, not a folder; name a "
            "folder path",
            usage=True,
        )
    created = [] if created is None else created
    try:
        # A Ctrl-C or SIGTERM is held back while a folder is created and
        # recorded, and while the probe file exists, so that the cleanup
        # below has every folder on its list and finds them empty.
        for folder in _missing_folders(path):
            with interrupts.deferred():
                folder.mkdir()
                created.append(folder)
        with interrupts.deferred():
            handle, probe = tempfile.mkstemp(dir=path, prefix=".write-check-")
            os.close(handle)
            os.unlink(probe)
    except OSError as err:
        remove_empty_folders(created)
        fix = _FIXES_BY_ERRNO.get(err.errno, "choose another --output-dir")
        raise CommandError(
            f"cannot write to --output-dir {path}: {err.strerror or err}; {fix}",
            usage=err.errno == errno.ENAMETOOLONG,
        ) from err
    except BaseException:
        # A Ctrl-C here leaves no folder behind either.
        remove_empty_folders(created)
        raise
    return created


logger = logging.getLogger(__name__)


@contextlib.contextmanager
def output_dir_lock(path: Path, busy_message: str | None = None) -> Iterator[None]:
    """Hold an exclusive advisory lock on the folder ``path`` for a run.

    Two runs into one folder would otherwise both pass the start-up checks,
    and the later save would replace the earlier run's model. The lock is
    ``flock`` on the folder itself, so no lock file is left behind, and the
    system releases it when the process ends, however it ends. Where
    ``flock`` is missing (Windows) or refused (some network file systems),
    the run goes on without a lock.

    ``export`` takes the same lock, with its own ``busy_message``, so that
    a run cannot save a new model while the export checks the old one.

    Raises:
        CommandError: If another process holds the lock.
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    descriptor = os.open(path, os.O_RDONLY)
    try:
        try:
            _lock_exclusively(fcntl, descriptor)
        except BlockingIOError:
            raise CommandError(
                busy_message
                or f"--output-dir {path} is in use by another sentiment-lstm "
                "process, such as a train run or an export; wait for it to "
                "finish, or choose another --output-dir"
            ) from None
        except OSError as err:
            logger.debug("cannot lock %s (%s); training without a lock", path, err)
        yield
    finally:
        os.close(descriptor)


# Tries to take the lock, 50 ms apart. predict, evaluate and serve hold a
# shared lock for a moment when they check a folder without a model
# (files.folder_locked), which must not look like another run.
LOCK_ATTEMPTS = 20


def _lock_exclusively(fcntl: Any, descriptor: int) -> None:
    """Take an exclusive flock, or raise BlockingIOError if another run has one."""
    for attempt in range(LOCK_ATTEMPTS):
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if attempt == LOCK_ATTEMPTS - 1:
                raise
            time.sleep(0.05)


def check_no_saved_model(path: Path) -> None:
    """Reject an --output-dir that contains a model or an interrupted run.

    Raises:
        CommandError: If ``path`` contains the ``config.json`` of a model or
            a resumable checkpoint. The message gives the flags that replace
            the model or continue the run.
    """
    if not os.path.isdir(path):
        return
    has_model = _is_model_config(path / "config.json")
    has_checkpoint = any(path.glob("checkpoint*.pt"))
    # A run keeps its checkpoint when interrupted, and when no epoch reached
    # --required-acc-checkpoint.
    if has_checkpoint and has_model:
        found = "a sentiment-lstm model and the checkpoint of a later run"
        options = "--resume to continue that run, --overwrite to start a new one"
    elif has_checkpoint:
        found = (
            "the checkpoint of a run that was interrupted or reached no "
            "--required-acc-checkpoint"
        )
        options = "--resume to continue it, --overwrite to start a new one"
    elif has_model:
        found = "a sentiment-lstm model"
        options = "--overwrite to replace it with the new one once that is saved"
    else:
        return
    raise CommandError(
        f"--output-dir {path} already contains {found}; pass {options}, or "
        "choose another --output-dir",
        usage=True,
    )


def _check_no_other_model(path: Path) -> None:
    """Reject a folder whose model files belong to something else.

    A run replaces the files of ``MODEL_FILES``, which is what retraining
    into a model directory expects. In any other folder those names are
    another tool's files, so they are left alone.
    """
    # Path.is_dir raises for a name that is too long, but os.path.isdir
    # returns False, so prepare_output_dir reports the error with its fix.
    if not os.path.isdir(path):
        return
    present = [name for name in MODEL_FILES if (path / name).exists()]
    if not present or _is_model_config(path / "config.json"):
        return
    reason = _unreadable_config_reason(path / "config.json")
    found = (
        f"a config.json that cannot be read ({reason})"
        if reason is not None
        else "not a sentiment-lstm model"
    )
    raise CommandError(
        f"--output-dir {path} contains {', '.join(present)} but {found}, and "
        "training would replace these files, so --overwrite does not apply; "
        "choose a new or empty folder, or a sentiment-lstm model directory",
        usage=True,
    )


def _unreadable_config_reason(path: Path) -> str | None:
    """Return why a config.json that exists cannot be read, or None."""
    if not os.path.lexists(path):
        return None
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        return f"{type(err).__name__}: {err}"[:200]
    return None


def _is_model_config(path: Path) -> bool:
    """Return whether ``path`` is the config.json of a sentiment-lstm model."""
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(values, dict) and {"format_version", "labels", "model"} <= set(
        values
    )


def remove_empty_folders(created: list[Path]) -> None:
    """Remove the folders of ``created`` that are empty, innermost first.

    A folder that contains anything, or cannot be removed, stays.
    """
    for folder in reversed(created):
        try:
            folder.rmdir()
        except OSError:
            return


def check_resume_checkpoint(path: Path, ensemble_size: int) -> None:
    """Reject ``--resume`` before any data is read when there is no checkpoint.

    Raises:
        CommandError: If the checkpoint that the run would continue is missing.
    """
    # imported here, because PyTorch would slow down --help
    from sentiment_lstm.pipeline import CHECKPOINT_FILE
    from sentiment_lstm.training import member_checkpoint

    if ensemble_size == 1:
        checkpoint = path / CHECKPOINT_FILE
        other_kind = member_checkpoint(path, 0)
        run_was = "an ensemble"
        fix = "resume with the --ensemble-size of that run"
    else:
        checkpoint = member_checkpoint(path, 0)
        other_kind = path / CHECKPOINT_FILE
        run_was = "a single network"
        fix = "resume without --ensemble-size, or with --ensemble-size 1"
    if not checkpoint.is_file() and other_kind.is_file():
        raise CommandError(
            f"no checkpoint to resume at {checkpoint}, but {other_kind} shows that "
            f"the interrupted run trained {run_was}; {fix}"
        )
    if not checkpoint.is_file():
        raise CommandError(
            f"no checkpoint to resume at {checkpoint}; the run finished or "
            "never completed an epoch, so train without --resume"
        )


def interruption_message(path: Path, record: Any, *, overwrite: bool = False) -> str:
    """Return a message naming what an interrupted run saved in ``path`` and how to continue.

    Args:
        path: The output folder.
        record: The run's ``pipeline.SaveRecord``.
        overwrite: Whether the run had --overwrite, which --resume replaces.
    """
    from sentiment_lstm.artifact import WEIGHTS_FILE

    checkpoints = _checkpoints(path)
    if record.finished:
        if record.ensemble_saved:
            # An ensemble saves its model once, when training has ended.
            return f"interrupted after training finished; the model is saved in {path}"
        head = "interrupted after training finished"
    elif record.checkpoint_epoch is not None:
        head = f"interrupted after epoch {record.checkpoint_epoch} finished"
    elif checkpoints:
        head = "interrupted" + _ensemble_progress(path)
    else:
        head = "interrupted before the first epoch finished"
    if record.model_epoch is not None:
        model = f"the model of epoch {record.model_epoch} is saved in {path}"
    elif (path / WEIGHTS_FILE).is_file():
        model = f"{path} keeps the model it held before this run"
    else:
        model = "no model was saved"
    if not checkpoints:
        return f"{head}; {model}"
    if len(checkpoints) == 1:
        source = str(checkpoints[0])
    else:
        source = f"the {len(checkpoints)} checkpoints in {path}"
    flag = "--resume in place of --overwrite" if overwrite else "--resume"
    return (
        f"{head}; {model}; to continue, repeat the command with {flag}, "
        f"which starts from {source}"
    )


def _ensemble_progress(path: Path) -> str:
    """Describe how far the members of an interrupted ensemble got, or "".

    The members train one after another, and each keeps its checkpoint until
    the ensemble is done, so the last member checkpoint is the one in
    progress.
    """
    from sentiment_lstm.training import (
        CheckpointError,
        load_checkpoint,
        member_checkpoint,
    )

    members = 0
    while member_checkpoint(path, members).is_file():
        members += 1
    if not members:
        return ""
    try:
        epoch = load_checkpoint(member_checkpoint(path, members - 1))["epoch"]
    except (CheckpointError, KeyError, TypeError):
        return ""
    return f" after epoch {epoch} of ensemble member {members} finished"


def _checkpoints(path: Path) -> list[Path]:
    try:
        return sorted(path.glob(CHECKPOINT_PATTERN))
    except OSError:
        return []


def _file_in_path(path: Path) -> Path | None:
    """Return the first part of ``path``, from the full path up, that is a file."""
    for part in (path, *path.parents):
        # os.path.isfile returns False where the path cannot be examined
        if os.path.isfile(part):
            return part
    return None


def _missing_folders(path: Path) -> list[Path]:
    """Return the folders of ``path`` that do not exist yet, outermost first."""
    missing = []
    for part in (path, *path.parents):
        # os.path.lexists returns False for a name the system rejects, such
        # as one that is too long; mkdir then reports why
        if os.path.lexists(part):
            break
        missing.append(part)
    return missing[::-1]
