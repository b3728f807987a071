"""Fingerprint of the data files a model was trained on."""

import hashlib
import os
from pathlib import Path

from sentiment_lstm.data.records import DataError

_CHUNK_BYTES = 1 << 20


def _file_sha256(path: Path) -> bytes:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as file:
            for chunk in iter(lambda: file.read(_CHUNK_BYTES), b""):
                digest.update(chunk)
    except OSError as err:
        raise DataError(
            f"{path}: cannot read the file to fingerprint it: {err}"
        ) from err
    return digest.digest()


def data_fingerprint(files: list[Path]) -> str:
    """Hash the names and bytes of data files into one sha256 hex digest.

    Each file is named by its path relative to the deepest folder that contains
    all of them, and files are hashed in the order of those names. The digest
    therefore does not depend on where the data lies or on the order of files.

    Args:
        files: Files that were read, such as ``ReadResult.files``.

    Returns:
        The sha256 digest as 64 hex characters.

    Raises:
        DataError: If files is empty or a file cannot be read.
    """
    if not files:
        raise DataError("no data files to fingerprint; read the data first")
    resolved = [Path(file).resolve() for file in files]
    root = Path(os.path.commonpath([path.parent for path in resolved]))
    named = sorted((path.relative_to(root).as_posix(), path) for path in resolved)

    digest = hashlib.sha256()
    for name, path in named:
        encoded = name.encode("utf-8", "surrogateescape")
        digest.update(len(encoded).to_bytes(8, "big"))
        digest.update(encoded)
        digest.update(_file_sha256(path))
    return digest.hexdigest()
