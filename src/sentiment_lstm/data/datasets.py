"""Named data sets: the rt-polarity download, its cache and local copies."""

import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
import uuid
import zlib
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from sentiment_lstm.data.line_files import find_posneg_pair, is_posneg_stem
from sentiment_lstm.data.records import DataError, broken_link_error

logger = logging.getLogger(__name__)

RT_POLARITY_URL = (
    "https://www.cs.cornell.edu/people/pabo/movie-review-data/rt-polaritydata.tar.gz"
)

# sha256 and line count of the files in rt-polaritydata.tar.gz (sentence polarity
# data set v1.0 by Pang and Lee), keyed by file name.
RT_POLARITY_SHA256 = {
    "rt-polarity.pos": "d79ef14009bbf87cd6be21f91c3ea1a3cbcb73b34dfb4231aef7bbcd7677abc4",
    "rt-polarity.neg": "203dc752aef5726d28d1a527f50f887175a6e16619bbb4c3eddf6f4d890f75c1",
}
RT_POLARITY_LINES = 5331

CACHE_ENV = "SENTIMENT_LSTM_CACHE"
RT_POLARITY_ENV = "SENTIMENT_LSTM_RT_POLARITY"
RT_POLARITY_URL_ENV = "SENTIMENT_LSTM_RT_POLARITY_URL"

DATASET_NAMES = ("rt-polarity",)

# Seconds that a blocking network operation of the download may take.
DOWNLOAD_TIMEOUT_S = 60

# The real files are about 0.6 MB each. The limit keeps a corrupt or hostile
# archive from filling memory before the checksum rejects it.
_MAX_MEMBER_BYTES = 64 * 2**20
# The archive contains the two members, compressed, and a few headers. A larger
# response stops the download instead of filling the disk.
_MAX_DOWNLOAD_BYTES = 2 * _MAX_MEMBER_BYTES + 2**20

_LOCAL_COPY_HINT = (
    f"set {RT_POLARITY_ENV} to a local copy (a folder containing rt-polarity.pos "
    "and rt-polarity.neg, or rt-polaritydata.tar.gz)"
)


def cache_root(cache_dir: Path | None = None) -> Path:
    """Return the cache folder: cache_dir, else $SENTIMENT_LSTM_CACHE, else
    ~/.cache/sentiment-lstm."""
    if cache_dir is not None:
        return Path(cache_dir)
    from_env = os.environ.get(CACHE_ENV)
    if from_env:
        return Path(from_env)
    return Path.home() / ".cache" / "sentiment-lstm"


def _verify(origin: str, name: str, data: bytes) -> None:
    expected = RT_POLARITY_SHA256[name]
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise DataError(
            f"{origin}: checksum mismatch for {name}: expected sha256 {expected}, "
            f"got {actual}; the file is damaged or not rt-polarity v1.0, so "
            f"download it again or {_LOCAL_COPY_HINT}"
        )
    lines = data.count(b"\n")
    if lines != RT_POLARITY_LINES:
        raise DataError(
            f"{origin}: {name} has {lines} lines, expected {RT_POLARITY_LINES}; "
            f"download it again or {_LOCAL_COPY_HINT}"
        )


def _read_verified_folder(folder: Path) -> None:
    for name in RT_POLARITY_SHA256:
        path = folder / name
        try:
            data = path.read_bytes()
        except OSError as err:
            raise DataError(f"{path}: cannot read the file: {err}") from err
        _verify(str(folder), name, data)


def _is_valid_copy(folder: Path) -> bool:
    if not all((folder / name).is_file() for name in RT_POLARITY_SHA256):
        return False
    try:
        _read_verified_folder(folder)
    except DataError as err:
        logger.warning("ignoring the cached rt-polarity in %s: %s", folder, err)
        return False
    return True


def _extract_members(archive_file: BinaryIO, origin: str) -> dict[str, bytes]:
    """Read and verify rt-polarity.pos and rt-polarity.neg from a .tar.gz file.

    Only these two regular files are read, by base name, and nothing in the
    archive is extracted to disk under its own path. A member path that is
    absolute or contains ".." still rejects the whole archive.
    """
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=archive_file, mode="r:gz") as archive:
            for member in archive:
                member_path = PurePosixPath(member.name)
                if member_path.is_absolute() or ".." in member_path.parts:
                    raise DataError(
                        f"{origin}: unsafe path {member.name!r} in the archive; "
                        f"{_LOCAL_COPY_HINT}"
                    )
                name = member_path.name
                if name not in RT_POLARITY_SHA256:
                    continue
                if not member.isfile():
                    raise DataError(
                        f"{origin}: archive member {member.name!r} is not a "
                        f"regular file; {_LOCAL_COPY_HINT}"
                    )
                if name in found:
                    raise DataError(
                        f"{origin}: the archive contains more than one {name}; "
                        f"{_LOCAL_COPY_HINT}"
                    )
                if member.size > _MAX_MEMBER_BYTES:
                    raise DataError(
                        f"{origin}: archive member {member.name!r} has {member.size} "
                        f"bytes, more than the {_MAX_MEMBER_BYTES} allowed; "
                        f"{_LOCAL_COPY_HINT}"
                    )
                extracted = archive.extractfile(member)
                found[name] = extracted.read() if extracted is not None else b""
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise DataError(
            f"{origin}: not a valid .tar.gz archive: {err}; {_LOCAL_COPY_HINT}"
        ) from err

    missing = [name for name in RT_POLARITY_SHA256 if name not in found]
    if missing:
        raise DataError(
            f"{origin}: the archive does not contain {' or '.join(missing)}; "
            "expected rt-polaritydata/rt-polarity.pos and .neg, "
            f"so {_LOCAL_COPY_HINT}"
        )
    for name, data in found.items():
        _verify(origin, name, data)
    return found


def _install(files: dict[str, bytes], target: Path) -> None:
    """Write verified files into a staging folder and rename it to target.

    Readers never see a half-written target. An old, invalid target is renamed
    aside first, so target is missing for a moment in that case.
    """
    root = target.parent
    try:
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".rt-polarity-", dir=root))
    except OSError as err:
        raise DataError(
            f"cannot create the cache folder {root}: {err}; set {CACHE_ENV} to a "
            "writable folder"
        ) from err

    try:
        for name, data in files.items():
            (staging / name).write_bytes(data)
        if target.exists():
            # A rename cannot replace a non-empty folder, so move the old copy
            # aside first.
            stale = root / f".rt-polarity-stale-{uuid.uuid4().hex}"
            os.replace(target, stale)
            shutil.rmtree(stale, ignore_errors=True)
        os.replace(staging, target)
    except OSError as err:
        # Another process may have installed the same files in the meantime.
        if _is_valid_copy(target):
            return
        raise DataError(
            f"cannot write the rt-polarity cache in {target}: {err}; set "
            f"{CACHE_ENV} to a writable folder"
        ) from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("stored rt-polarity in %s", target)


def _use_local_copy(source: Path, target: Path) -> Path:
    if source.is_dir():
        missing = [name for name in RT_POLARITY_SHA256 if not (source / name).is_file()]
        if missing:
            raise DataError(
                f"{source}: {' and '.join(missing)} not found in the local copy of "
                f"rt-polarity; {_LOCAL_COPY_HINT}"
            )
        _read_verified_folder(source)
        logger.info("using the local copy of rt-polarity in %s", source)
        return source
    if source.is_file():
        if _is_valid_copy(target):
            logger.info("using the cached rt-polarity in %s", target)
            return target
        logger.info("extracting rt-polarity from %s into %s", source, target)
        try:
            with source.open("rb") as archive_file:
                files = _extract_members(archive_file, str(source))
        except OSError as err:
            raise DataError(f"{source}: cannot read the archive: {err}") from err
        _install(files, target)
        return target
    relative = (
        ""
        if source.is_absolute()
        else f" (relative to the current folder, so {source.absolute()})"
    )
    raise DataError(
        f"local copy of rt-polarity not found: {source}{relative}; "
        f"{_LOCAL_COPY_HINT}, or unset {RT_POLARITY_ENV} to download the data set"
    )


def _download(url: str, target: Path) -> Path:
    # Imported here: http.client and urllib.request cost every command about
    # 25 ms at start, and only this download needs them.
    import http.client
    import urllib.error
    import urllib.request

    logger.info("downloading rt-polarity from %s", url)
    with tempfile.TemporaryFile() as archive_file:
        try:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
                complete = _copy_at_most(response, archive_file, _MAX_DOWNLOAD_BYTES)
        except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
            raise DataError(
                f"failed to download rt-polarity from {url}: {err}; {_LOCAL_COPY_HINT}"
            ) from err
        except ValueError as err:
            raise DataError(
                f"invalid download URL {url!r}: {err}; set {RT_POLARITY_URL_ENV} to "
                f"an http or https URL, or {_LOCAL_COPY_HINT}"
            ) from err
        if not complete:
            raise DataError(
                f"failed to download rt-polarity from {url}: the response is "
                f"larger than {_MAX_DOWNLOAD_BYTES} bytes, far more than the "
                f"archive; check the URL, or {_LOCAL_COPY_HINT}"
            )
        size = archive_file.tell()
        logger.info("downloaded %d bytes from %s", size, url)
        archive_file.seek(0)
        files = _extract_members(archive_file, url)
    _install(files, target)
    return target


def _copy_at_most(source: BinaryIO, target: BinaryIO, limit: int) -> bool:
    """Copy source to target; return False, early, once it passes limit bytes."""
    copied = 0
    while chunk := source.read(2**16):
        copied += len(chunk)
        if copied > limit:
            return False
        target.write(chunk)
    return True


def fetch_rt_polarity(
    cache_dir: Path | None = None,
    *,
    url: str = RT_POLARITY_URL,
    local_copy: Path | None = None,
) -> Path:
    """Return a folder containing rt-polarity.pos and rt-polarity.neg.

    The first source that is set or valid wins. First comes local_copy, else
    $SENTIMENT_LSTM_RT_POLARITY: a folder containing the two files is returned as
    it is, and rt-polaritydata.tar.gz is extracted into the cache. Next comes a
    valid copy in the cache, and last a download of the archive. Each file is
    checked against its sha256 and line count before use, and a download is
    cached only if both files pass.

    Args:
        cache_dir: Cache folder. None uses $SENTIMENT_LSTM_CACHE, else
            ~/.cache/sentiment-lstm. Files go to ``<cache>/rt-polarity/``.
        url: URL of rt-polaritydata.tar.gz. If left at the default,
            $SENTIMENT_LSTM_RT_POLARITY_URL replaces it where set.
        local_copy: Folder or archive to use instead of the environment variable
            and the download.

    Returns:
        The folder containing the verified files.

    Raises:
        DataError: If the local copy is missing or invalid, the download fails, a
            checksum does not match, or the cache cannot be written.
    """
    if local_copy is None and os.environ.get(RT_POLARITY_ENV):
        local_copy = Path(os.environ[RT_POLARITY_ENV])
    target = cache_root(cache_dir) / "rt-polarity"
    if local_copy is not None:
        return _use_local_copy(Path(local_copy), target)

    if _is_valid_copy(target):
        logger.info("using the cached rt-polarity in %s", target)
        return target
    if url == RT_POLARITY_URL and os.environ.get(RT_POLARITY_URL_ENV):
        url = os.environ[RT_POLARITY_URL_ENV]
    return _download(url, target)


def _is_complete_pair(stem: Path) -> bool:
    try:
        find_posneg_pair(stem)
    except DataError:
        return False
    return True


def resolve_data(path_or_name: str, *, cache_dir: Path | None = None) -> Path:
    """Turn a data path or a data set name into a path to read.

    An existing path, or the common stem of a pos/neg pair, is returned as a
    Path. Otherwise a data set name is fetched: "rt-polarity" gives a folder
    containing rt-polarity.pos and rt-polarity.neg (see ``fetch_rt_polarity``).

    Args:
        path_or_name: A file, folder or pos/neg stem, or a data set name.
        cache_dir: Cache folder for downloaded data sets.

    Returns:
        The path to read.

    Raises:
        DataError: If the path is empty, does not exist and is not a data set
            name, or the data set cannot be fetched.
    """
    if not path_or_name.strip():
        raise DataError(
            f"the data path is empty ({path_or_name!r}); pass an existing file or "
            f"folder, or a data set name: {', '.join(DATASET_NAMES)}"
        )
    path = Path(path_or_name)
    if (
        path_or_name in DATASET_NAMES
        and not path.exists()
        and is_posneg_stem(path)
        and not _is_complete_pair(path)
    ):
        logger.warning(
            "%s in %s is half a pos/neg pair, so the data set of that name is "
            "read instead",
            path_or_name,
            Path.cwd(),
        )
    elif path.exists() or is_posneg_stem(path):
        if path_or_name in DATASET_NAMES:
            logger.warning(
                "%s is the name of a data set and of a path in %s; reading the "
                "path, which is not checked against the data set's SHA-256. Pass "
                "./%s to read the path without this warning, or run from another "
                "folder to read the data set",
                path_or_name,
                Path.cwd(),
                path_or_name,
            )
        return path
    if path_or_name == "rt-polarity":
        return fetch_rt_polarity(cache_dir)
    if path.is_symlink():
        raise broken_link_error(path)
    raise DataError(
        f"data path not found: {path_or_name!r}; pass an existing file or folder, "
        f"or a data set name: {', '.join(DATASET_NAMES)}"
    )
