"""Reader for folders with one text file per review, in the aclImdb layout.

A review folder contains pos/ and neg/ subfolders of *.txt files. A data set
folder may instead contain train/ and test/ review folders, and both are read.
"""

import logging
from collections.abc import Iterator
from pathlib import Path

from sentiment_lstm.data.collector import (
    EMPTY_REVIEW_REASON,
    ENCODING_FIX,
    SKIP_HINT,
    TOO_LONG_FIX,
    ExampleCollector,
)
from sentiment_lstm.data.decoding import (
    SAVE_AS_UTF8_FIX,
    EncodingError,
    decode_file,
    invalid_byte_reason,
)
from sentiment_lstm.data.line_files import LineReview
from sentiment_lstm.data.records import DataError
from sentiment_lstm.files import broken_link_reason
from sentiment_lstm.text import MAX_REVIEW_CHARS, TOO_LONG_REASON

logger = logging.getLogger(__name__)

CLASS_FOLDERS = (("neg", 0), ("pos", 1))
SPLIT_FOLDERS = ("train", "test")

# Number of ignored names quoted in a log line.
_LOGGED_NAMES = 10


def _has_class_folders(folder: Path) -> bool:
    return all((folder / name).is_dir() for name, _ in CLASS_FOLDERS)


def find_review_folders(path: Path) -> list[Path]:
    """Return the folders to read under path: path itself, or its train/ and test/.

    The list is empty if path has neither pos/ and neg/ nor a train/ or test/
    subfolder that has them.
    """
    if _has_class_folders(path):
        return [path]
    return [path / name for name in SPLIT_FOLDERS if _has_class_folders(path / name)]


def partial_layout_note(path: Path) -> str:
    """Return why path, which find_review_folders rejects, is not a review folder.

    Names a class folder without its partner, and class folders named in
    another case, such as POS/; otherwise returns "".
    """
    for folder in [path] + [path / name for name in SPLIT_FOLDERS]:
        if not folder.is_dir():
            continue
        try:
            names = {entry.name for entry in folder.iterdir() if entry.is_dir()}
        except OSError:
            continue
        # A class folder named in another case comes first, because adding
        # its partner would leave it unread.
        other_case = sorted(
            name
            for name in names
            if name.lower() in {"pos", "neg"} and name not in {"pos", "neg"}
        )
        if other_case:
            return (
                f"; {folder} has {' and '.join(name + '/' for name in other_case)}, "
                "but the class folders must be named pos/ and neg/ in lower case"
            )
        present = [name for name, _ in CLASS_FOLDERS if name in names]
        if len(present) == 1:
            (missing,) = {name for name, _ in CLASS_FOLDERS} - set(present)
            return (
                f"; {folder} has {present[0]}/ but no {missing}/, so add a "
                f"{missing}/ folder, which may be empty where the data has one "
                "class only"
            )
    return ""


def require_review_folders(path: Path) -> list[Path]:
    """Return the review folders under path, as :func:`find_review_folders` does.

    Raises:
        DataError: If there is none.
    """
    folders = find_review_folders(path)
    if not folders:
        raise DataError(
            f"{path}: expected pos/ and neg/ subfolders of .txt reviews, or train/ "
            f"and test/ subfolders that contain them{partial_layout_note(path)}; "
            "pass a folder with this layout"
        )
    return folders


def _log_ignored(
    folder: Path, ignored: list[str], used: str, level: int = logging.INFO
) -> None:
    if not ignored:
        return
    logger.log(
        level, "ignored in %s, which only uses %s: %s", folder, used, _listed(ignored)
    )


def _listed(names: list[str]) -> str:
    """Join the first few names, with a count of the rest."""
    listed = ", ".join(names[:_LOGGED_NAMES])
    if len(names) > _LOGGED_NAMES:
        listed += f" and {len(names) - _LOGGED_NAMES} more"
    return listed


def read_review_file(path: Path) -> tuple[LineReview, str | None]:
    """Read the one review of a review file, with its encoding.

    Returns:
        The review at line 1, or its reason when it cannot be scored: a
        broken link, a file too large to read, UTF-16 or binary content, an
        invalid byte, too many characters or no text. Then the encoding the
        file was decoded with, or None when it was not decoded.

    Raises:
        DataError: If the file cannot be read.
    """
    source = str(path)
    if not path.exists():
        if path.is_symlink():
            reason = f"a broken link: {broken_link_reason(path)}"
            fix = f"restore the target or remove the link, or use {SKIP_HINT}"
        else:
            # The folder was listed before the file went away.
            reason = "file not found: it was removed while the folder was read"
            fix = f"read the folder again, or use {SKIP_HINT}"
        return LineReview(1, "", reason, fix), None
    try:
        # A character takes at most 4 bytes in UTF-8, so a larger file cannot
        # contain a review within the limit, and it is not read at all.
        too_large = path.stat().st_size > 4 * MAX_REVIEW_CHARS + 4
    except OSError as err:
        raise DataError(f"{source}: cannot read the file: {err}") from err
    if too_large:
        reason = (
            f"the file has more than {4 * MAX_REVIEW_CHARS + 4:,} bytes, more "
            f"than a review of {MAX_REVIEW_CHARS:,} characters can take, so it "
            "is not read"
        )
        return LineReview(1, "", reason, TOO_LONG_FIX), None
    try:
        decoded = decode_file(path, log_fallback=False)
    except EncodingError as err:
        # One file of many in another encoding is a bad row like an invalid
        # byte, so that --skip-bad-rows can leave it out.
        fix = "save the file as UTF-8" if err.fix == SAVE_AS_UTF8_FIX else err.fix
        return LineReview(1, "", err.reason, f"{fix}, or use {SKIP_HINT}"), None
    reason = invalid_byte_reason(decoded.text, decoded)
    if reason is not None:
        review = LineReview(1, decoded.text.strip(), reason, ENCODING_FIX)
        return review, decoded.encoding
    text = decoded.text.strip()
    if len(text) > MAX_REVIEW_CHARS:
        return LineReview(1, "", TOO_LONG_REASON, TOO_LONG_FIX), decoded.encoding
    if not text:
        fix = f"remove the file, or use {SKIP_HINT}"
        return LineReview(1, "", EMPTY_REVIEW_REASON, fix), decoded.encoding
    return LineReview(1, text), decoded.encoding


def review_files(path: Path, *, training: bool = True) -> list[tuple[Path, int]]:
    """Return each review file under path with its label, in reading order.

    Files come in name order, neg/ before pos/ and train/ before test/.
    Other folders and files, such as unsup/ in aclImdb, are ignored with an INFO
    log line, or a WARNING for those inside pos/ and neg/. A broken ``*.txt``
    link is yielded too, as a review that cannot be read. With ``training``,
    train/ and test/ read together get an INFO line on how to keep test/ apart.

    Raises:
        DataError: If path has no review folder.
    """
    folders = require_review_folders(path)
    listed: list[tuple[Path, int]] = []
    for name in SPLIT_FOLDERS:
        halves = [
            f"{label_name}/"
            for label_name, _ in CLASS_FOLDERS
            if (path / name / label_name).is_dir()
        ]
        if len(halves) == 1:
            missing = "pos/" if halves[0] == "neg/" else "neg/"
            logger.warning(
                "%s has %s but no %s, so its reviews are not read; add %s",
                path / name,
                halves[0],
                missing,
                path / name / missing.rstrip("/"),
            )
    if folders != [path]:
        used = {folder.name for folder in folders}
        ignored = sorted(item.name for item in path.iterdir() if item.name not in used)
        _log_ignored(path, ignored, " and ".join(f"{name}/" for name in sorted(used)))
    if training and len(folders) > 1:
        logger.info(
            "%s: the reviews of %s are read as one set; to keep test/ as the "
            "test split in train, pass --data %s --test-data %s",
            path,
            " and ".join(f"{folder.name}/" for folder in folders),
            folders[0],
            folders[1],
        )

    for folder in folders:
        class_names = {name for name, _ in CLASS_FOLDERS}
        ignored = sorted(
            item.name for item in folder.iterdir() if item.name not in class_names
        )
        _log_ignored(folder, ignored, "pos/ and neg/")
        for name, label in CLASS_FOLDERS:
            class_folder = folder / name
            files = []
            skipped = []
            hidden = []
            not_files = []
            for item in sorted(class_folder.iterdir()):
                if item.name.startswith("."):
                    hidden.append(item.name)
                elif item.suffix.lower() != ".txt":
                    skipped.append(item.name)
                elif item.is_file() or (item.is_symlink() and not item.exists()):
                    # A broken link is a review that cannot be read, and so a
                    # bad row.
                    files.append(item)
                else:
                    not_files.append(item.name)
            _log_ignored(class_folder, skipped, "*.txt files", logging.WARNING)
            if not_files:
                logger.warning(
                    "ignored in %s, because they are folders or other non-files: %s",
                    class_folder,
                    _listed(not_files),
                )
            # macOS writes a hidden "._" file of metadata beside each file it
            # copies to some drives and archives, and a file such as "._1.txt" is
            # not a review.
            _log_ignored(
                class_folder, hidden, "*.txt files whose names do not start with '.'"
            )
            listed += [(file, label) for file in files]
    return listed


def folder_reviews(
    path: Path, files: list[tuple[Path, int]]
) -> Iterator[tuple[Path, LineReview]]:
    """Yield each review file with its review, one file at a time.

    ``files`` are those that :func:`review_files` lists under ``path``; a
    file that cannot be scored comes with its reason. Only the names stay in
    memory, not the reviews.

    Raises:
        DataError: If a file cannot be read.
    """
    cp1252_files = 0
    for file, _ in files:
        review, encoding = read_review_file(file)
        cp1252_files += encoding == "cp1252"
        yield file, review
    _log_cp1252_files(cp1252_files, path)


def read_review_folders(path: Path, collector: ExampleCollector) -> None:
    """Read the pos/ and neg/ review files under path into collector.

    The files are those of :func:`review_files`. Each file is one review,
    with line number 1. A file that cannot be scored, such as one in UTF-16,
    is a bad row, so that bad rows can be skipped.

    Args:
        path: A review folder, or a folder with train/ and test/ review folders.
        collector: Receiver of examples and bad rows.

    Raises:
        DataError: If path has no review folder, or on the first bad file unless
            bad rows are skipped.
    """
    cp1252_files = 0
    # The first name under which each file was read: a link from pos/ to a
    # file in neg/ would give one review both labels.
    read_as: dict[Path, Path] = {}
    for file, label in review_files(path):
        if file.exists():
            real = file.resolve()
            first = read_as.get(real)
            # Scoring uses no labels, so there it scores each name.
            conflict = first is not None and first.parent != file.parent
            if conflict and not collector.keep_unscored:
                collector.reject(
                    str(file),
                    1,
                    f"the same file as {first} (through a link), which "
                    f"{first.parent.name}/ labels otherwise",
                    f"remove the link, or use {SKIP_HINT}",
                )
                continue
            read_as.setdefault(real, file)
            collector.add_file(file)
        review, encoding = read_review_file(file)
        cp1252_files += encoding == "cp1252"
        if review.reason is None:
            collector.add(review.text, label, str(file), review.line)
        else:
            collector.reject_unscorable(
                str(file), review.line, review.text, review.reason, review.fix
            )
    _log_cp1252_files(cp1252_files, path)


def _log_cp1252_files(count: int, path: Path) -> None:
    if count == 1:
        logger.info(
            "1 review file under %s is not valid UTF-8, so it was decoded as cp1252",
            path,
        )
    elif count:
        logger.info(
            "%d review files under %s are not valid UTF-8, so they were decoded "
            "as cp1252",
            count,
            path,
        )
