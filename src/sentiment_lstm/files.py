"""Atomic file writes that leave files with the usual permissions, and output
to inherited descriptors such as /dev/stdout."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TextIO


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


def folder_locked(path: Path) -> bool:
    """Return whether another process has an exclusive ``flock`` on a folder.

    ``train`` locks its --output-dir so while it runs. False where
    ``flock`` is missing (Windows) or fails.
    """
    try:
        import fcntl
    except ImportError:
        return False
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        # Closing the descriptor also releases a lock taken above.
        os.close(descriptor)
    return False


def stderr_is_terminal() -> bool:
    """Return whether stderr is a terminal; False where it was closed (2>&-)."""
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (OSError, ValueError):
        return False


def file_sha256(path: Path) -> str:
    """Return the hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# The names under which Linux shows a process its own open descriptors.
_STANDARD_STREAM_NAMES = {"/dev/stdin": 0, "/dev/stdout": 1, "/dev/stderr": 2}
_DESCRIPTOR_NAME = re.compile(r"/(?:dev|proc/self|proc/([0-9]+))/fd/([0-9]+)")
# Symbolic links followed at most, as Linux does (MAXSYMLINKS).
_MAX_LINKS = 40


def inherited_descriptor(path: Path) -> int | None:
    """Return the open descriptor of this process that ``path`` leads to, or None.

    Where the shell redirects stdout to a file, /dev/stdout leads to that
    file, and replacing the file would drop what others wrote to it before
    and after. Output to such a path goes through the descriptor instead.
    The path may name the descriptor (/dev/stdout, /dev/fd/N,
    /proc/self/fd/N), be a symbolic link to such a name, or be the regular
    file that stdout or stderr writes to.
    """
    name = str(path)
    for _ in range(_MAX_LINKS):
        descriptor = _named_descriptor(name)
        if descriptor is not None:
            return descriptor
        try:
            target = os.readlink(name)
        except OSError:
            break
        name = os.path.join(os.path.dirname(name), target)
    try:
        status = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(status.st_mode):
        return None
    for descriptor in (1, 2):
        try:
            opened = os.fstat(descriptor)
        except OSError:
            continue
        if (opened.st_dev, opened.st_ino) == (status.st_dev, status.st_ino):
            return descriptor
    return None


def _named_descriptor(name: str) -> int | None:
    """Return the descriptor that a name such as /dev/fd/3 gives, or None."""
    # POSIX keeps a leading "//" in normpath, which Linux reads as "/".
    name = "/" + os.path.normpath(name).lstrip("/") if name.startswith("/") else name
    if name in _STANDARD_STREAM_NAMES:
        return _STANDARD_STREAM_NAMES[name]
    match = _DESCRIPTOR_NAME.fullmatch(name)
    if match is None or (match.group(1) and int(match.group(1)) != os.getpid()):
        return None
    return int(match.group(2))


@contextmanager
def descriptor_stream(descriptor: int, errors: str = "strict") -> Iterator[TextIO]:
    """Yield a UTF-8 text stream that writes to a copy of an open descriptor.

    The copy shares the file position with the original, so the text goes
    where the next write of the descriptor would, and the original stays open.
    Python's own sys.stdout and sys.stderr are flushed first.

    Raises:
        OSError: If the descriptor is not open for writing.
    """
    for stream in (sys.stdout, sys.stderr):
        with suppress(AttributeError, OSError, ValueError):
            if stream.fileno() == descriptor:
                stream.flush()
    stream = open(os.dup(descriptor), "w", encoding="utf-8", errors=errors, newline="")
    with closed_quietly_on_error(stream):
        yield stream
    stream.close()


@contextmanager
def closed_quietly_on_error(stream: TextIO) -> Iterator[None]:
    """Close ``stream`` when the block raises, ignoring a failed flush.

    After a write failed for a full disk, say, the close would try to flush
    the same buffer, fail again and replace the first error.
    """
    try:
        yield
    except BaseException:
        with suppress(OSError):
            stream.close()
        raise


def broken_link_reason(path: Path) -> str:
    """Return why a symbolic link leads to no file: a loop, or its missing end.

    The missing end is the last path of the chain of links, which may be
    another link's target rather than this one's.
    """
    try:
        Path(path).resolve(strict=True)
    except RuntimeError:
        # Python before 3.13 raises this for a loop of links.
        return "the links form a loop"
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "the links form a loop"
        return f"its target {os.path.realpath(path)} does not exist"
    return f"its target {os.path.realpath(path)} cannot be read"


def file_mode(path: Path) -> int | None:
    """Return the permission bits of an existing file, or None."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return None


def on_read_only_file_system(path: Path) -> bool:
    """Return whether path's file system is mounted read-only.

    ``os.access(path, os.W_OK)`` is false on such a file system whatever the
    file's mode, so callers check this first to give the right fix.
    """
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def write_failure_advice(err: OSError) -> str:
    """Return "; " and what to do after a write failed for lack of space, else "".

    A file system mounted read-only gets advice too.
    """
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return "; free some disk space, or write the output to another disk"
    if err.errno == errno.EROFS:
        return "; write the output to another file system"
    if err.errno == errno.EFBIG:
        return (
            "; the file reached the largest size allowed, by this process's "
            "limit (ulimit -f) or by the file system; raise the limit, write the "
            "output to a file system that allows larger files, or split the input"
        )
    return ""
