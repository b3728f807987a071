"""Atomic file writes that leave files with the usual permissions."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _default_file_mode() -> int:
    # os.umask can only be read by setting it, so it is read once, at import
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


# The mode open() would give a new file. tempfile.mkstemp creates files that
# only their owner can read, which would hide a model from a server account.
DEFAULT_FILE_MODE = _default_file_mode()


@contextmanager
def atomic_path(path: Path, mode: int = DEFAULT_FILE_MODE) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` that replaces it on success.

    A crash or an exception leaves ``path`` as it was and removes the
    temporary file.

    Args:
        path: The file to create or replace.
        mode: Permission bits of the new file.
    """
    path = Path(path)
    handle, name = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, content: str, mode: int = DEFAULT_FILE_MODE) -> None:
    """Write UTF-8 text to ``path`` through a temporary file and a rename."""
    with atomic_path(path, mode) as temporary:
        temporary.write_text(content, encoding="utf-8")


def file_sha256(path: Path) -> str:
    """Return the hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
