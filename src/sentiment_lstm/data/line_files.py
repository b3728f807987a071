"""Readers for files with one review per line: pos/neg pairs and plain text."""

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from sentiment_lstm.data.collector import (
    EMPTY_FIX,
    EMPTY_REVIEW_REASON,
    ENCODING_FIX,
    TOO_LONG_FIX,
    ExampleCollector,
)
from sentiment_lstm.data.decoding import (
    DecodedText,
    Encoding,
    invalid_byte_reason,
    log_carriage_return_line_ends,
    open_text,
    scan_file,
    warn_about_carriage_returns,
)
from sentiment_lstm.data.records import DataError
from sentiment_lstm.text import MAX_REVIEW_CHARS, TOO_LONG_REASON

logger = logging.getLogger(__name__)

POSNEG_SUFFIXES = (".neg", ".pos")


def _with_suffix_case_of(suffix: str, model: str) -> str:
    """Spell suffix, ".neg" or ".pos", in the letter case of model, e.g. ".NEG"."""
    if model.isupper():
        return suffix.upper()
    if model[1:2].isupper():
        return suffix[:2].upper() + suffix[2:]
    return suffix


def _find_partner(
    folder: Path, stem: str, suffix: str, user_suffix: str
) -> Path | None:
    """Find the regular file stem + suffix in folder, ignoring the suffix's case.

    Of several matches (such as x.neg and x.NEG), the one in the letter case of
    ``user_suffix``, the suffix of the path the user passed, wins. Returns None
    if there is no unique match.
    """
    matches = _partner_candidates(folder, stem, suffix, user_suffix)
    return matches[0] if len(matches) == 1 else None


def _partner_candidates(
    folder: Path, stem: str, suffix: str, user_suffix: str
) -> list[Path]:
    """Return the file in the case of ``user_suffix``, or every case-insensitive match."""
    preferred = folder / (stem + _with_suffix_case_of(suffix, user_suffix))
    if preferred.is_file():
        return [preferred]
    try:
        return sorted(
            item
            for item in folder.iterdir()
            if item.name[: len(stem)] == stem
            and item.name[len(stem) :].lower() == suffix
            and item.is_file()
        )
    except OSError:
        return []


def posneg_files(folder: Path) -> tuple[list[Path], list[Path]]:
    """Return the regular *.neg and *.pos files in folder, sorted; case is ignored."""
    negatives: list[Path] = []
    positives: list[Path] = []
    for item in sorted(folder.iterdir()):
        suffix = item.suffix.lower()
        if suffix in POSNEG_SUFFIXES and item.is_file():
            (negatives if suffix == ".neg" else positives).append(item)
    return negatives, positives


def is_posneg_stem(path: Path) -> bool:
    """Return whether path is the common stem x of an x.pos or x.neg file."""
    if not path.name:
        return False
    return any(
        _find_partner(path.parent, path.name, suffix, suffix) is not None
        for suffix in POSNEG_SUFFIXES
    )


def find_posneg_pair(path: Path) -> tuple[Path, Path]:
    """Find the negative and positive file of a pos/neg pair.

    The suffixes .pos and .neg match in any letter case, as in format
    detection, and the files are returned as they are named in the folder.

    Args:
        path: Either file of the pair (``x.pos`` or ``x.neg``), their common stem
            (``x``), or a folder that contains exactly one ``*.pos`` and one
            ``*.neg`` regular file.

    Returns:
        The ``.neg`` file and the ``.pos`` file.

    Raises:
        DataError: If the pair is incomplete or the folder is ambiguous.
    """
    if path.is_dir():
        negatives, positives = posneg_files(path)
        if len(negatives) != 1 or len(positives) != 1:
            found = [item.name for item in negatives + positives] or ["none"]
            missing = [
                f"*{suffix}"
                for suffix, files in ((".pos", positives), (".neg", negatives))
                if not files
            ]
            fix = (
                f"add the missing {' and '.join(missing)} file"
                if missing
                else "pass one file of the pair instead"
            )
            raise DataError(
                f"{path}: expected exactly one *.pos and one *.neg file in the "
                f"folder, found: {', '.join(found)}; {fix}"
            )
        return negatives[0], positives[0]

    if path.suffix.lower() in POSNEG_SUFFIXES:
        stem, user_suffix = path.stem, path.suffix
    else:
        stem, user_suffix = path.name, ".pos"
    negative = _find_partner(path.parent, stem, ".neg", user_suffix)
    positive = _find_partner(path.parent, stem, ".pos", user_suffix)
    for suffix, found in ((".neg", negative), (".pos", positive)):
        candidates = _partner_candidates(path.parent, stem, suffix, user_suffix)
        if found is None and len(candidates) > 1:
            names = " and ".join(item.name for item in candidates)
            raise DataError(
                f"{path}: the {suffix} file of the pair is ambiguous: {names} "
                "differ only in letter case; keep one of them"
            )
    if negative is None or positive is None:
        negative_name = stem + _with_suffix_case_of(".neg", user_suffix)
        positive_name = stem + _with_suffix_case_of(".pos", user_suffix)
        missing = [
            str(path.parent / name)
            for name, found in ((negative_name, negative), (positive_name, positive))
            if found is None
        ]
        verb = "was" if len(missing) == 1 else "were"
        raise DataError(
            f"{path}: pos/neg data needs both {positive_name} and {negative_name} "
            f"side by side, but {' and '.join(missing)} {verb} not found"
        )
    return negative, positive


@dataclass(frozen=True)
class LineReview:
    """One line of a file of one review a line.

    Attributes:
        line: 1-based line number.
        text: The review without the whitespace around it; empty for a line
            too long to keep.
        reason: Why the review cannot be scored, or None.
        fix: What the user can do about ``reason``, for a bad-row message.
    """

    line: int
    text: str
    reason: str | None = None
    fix: str = ""


@dataclass(frozen=True)
class LineFile:
    """A file of one review a line, scanned for its encoding and line ends.

    Make one with :func:`scan_line_file`; :meth:`reviews` then reads the
    lines one at a time, so memory does not grow with the file.
    """

    path: Path
    encoding: Encoding
    carriage_returns_only: bool
    lone_carriage_returns: int

    def reviews(self) -> Iterator[LineReview]:
        """Yield every line of the file, in order, as a review or with its reason.

        Lines end at "\\n", with the "\\r" of CRLF removed, or at "\\r" in a
        file without any "\\n" (old Mac OS line ends); U+0085, U+2028 and
        other separators stay inside the reviews. A line longer than
        ``MAX_REVIEW_CHARS``, one with an invalid byte and an empty or
        whitespace-only one come with their reason.

        Raises:
            DataError: If the file cannot be read.
        """
        source = str(self.path)
        newline = "\n"
        if self.carriage_returns_only:
            log_carriage_return_line_ends(source)
            newline = "\r"
        # A "\\r" inside a line is counted only where the scan found one that
        # ends no line.
        count_returns = (
            self.lone_carriage_returns > 0 and not self.carriage_returns_only
        )
        returns = 0
        decoded = DecodedText("", self.encoding.name, self.encoding.errors)
        stream = open_text(self.path, self.encoding, newline, source)
        try:
            lines = enumerate(_bounded_lines(stream, newline), start=1)
            while True:
                try:
                    number, line = next(lines)
                except StopIteration:
                    break
                except (OSError, UnicodeDecodeError) as err:
                    raise DataError(f"{source}: cannot read the file: {err}") from err
                if line is None:
                    yield LineReview(number, "", TOO_LONG_REASON, TOO_LONG_FIX)
                    continue
                text = line.strip()
                if count_returns and "\r" in text:
                    returns += 1
                reason = invalid_byte_reason(line, decoded)
                if reason is not None:
                    yield LineReview(number, text, reason, ENCODING_FIX)
                elif not text:
                    yield LineReview(number, "", EMPTY_REVIEW_REASON, EMPTY_FIX)
                else:
                    yield LineReview(number, text)
        finally:
            stream.close()
            # Also when the caller stops early, as on a bad row.
            warn_about_carriage_returns(returns, source)


def _bounded_lines(stream: TextIO, newline: str) -> Iterator[str | None]:
    """Yield each line without its line end, or None for one too long to keep.

    A line is read in parts of at most ``MAX_REVIEW_CHARS`` + 2 characters, and
    the rest of a longer one is skipped part by part, so memory stays bounded
    however long a line is.
    """
    # A line within the limit plus its "\r\n" fits in one part.
    part_chars = MAX_REVIEW_CHARS + 2
    while True:
        line = stream.readline(part_chars)
        if not line:
            return
        if not line.endswith(newline) and len(line) == part_chars:
            # A line of whitespace alone stays a blank line, however long.
            blank = not line.strip()
            while line and not line.endswith(newline):
                line = stream.readline(part_chars)
                blank = blank and not line.strip()
            yield "" if blank else None
            continue
        line = line.removesuffix(newline)
        if newline == "\n":
            line = line.removesuffix("\r")
        if len(line) > MAX_REVIEW_CHARS:
            yield "" if not line.strip() else None
        else:
            yield line


def scan_line_file(path: Path) -> LineFile:
    """Scan a file of one review a line in bounded memory, before it is read.

    Raises:
        EncodingError: If the file is UTF-16, with or without a BOM, or binary.
        DataError: If the file cannot be read.
    """
    scan = scan_file(path)
    return LineFile(
        path,
        scan.result(),
        scan.has_carriage_return and not scan.has_line_feed,
        scan.lone_carriage_returns,
    )


def read_line_file(path: Path, label: int | None, collector: ExampleCollector) -> None:
    """Read a file with one review per line into collector.

    The lines are those of :meth:`LineFile.reviews`; a line with a reason is
    a bad row. Blank lines at the end of the file are ignored, except in
    prediction input that keeps unscored rows, where every line keeps its
    place as file scoring does.

    Args:
        path: File to read.
        label: Label of every review in the file, None for unlabelled text.
        collector: Receiver of examples and bad rows.

    Raises:
        DataError: On the first bad row unless bad rows are skipped, or if the file
            cannot be read.
    """
    collector.add_file(path)
    # Closed at once when a bad row raises, so that the file's warnings come
    # before the error.
    with contextlib.closing(scan_line_file(path).reviews()) as lines:
        _collect_lines(lines, label, str(path), collector)


def _collect_lines(
    lines: Iterator[LineReview],
    label: int | None,
    source: str,
    collector: ExampleCollector,
) -> None:
    """Add the lines of one file to collector, leaving out blank lines at its end."""
    # Blank lines wait for the next review, because at the end of the file they
    # contain no record. Those waiting are the lines just before it, so their
    # first line number and count describe them.
    blank_start = blank_count = 0
    for review in lines:
        if review.reason == EMPTY_REVIEW_REASON and not collector.keep_unscored:
            if not blank_count:
                blank_start = review.line
            blank_count += 1
            continue
        for line in range(blank_start, blank_start + blank_count):
            collector.reject_unscorable(
                source, line, "", EMPTY_REVIEW_REASON, EMPTY_FIX
            )
        blank_count = 0
        if review.reason is None:
            collector.add(review.text, label, source, review.line)
        else:
            collector.reject_unscorable(
                source, review.line, review.text, review.reason, review.fix
            )
    if blank_count:
        logger.debug("ignored %d blank lines at the end of %s", blank_count, source)


def read_posneg(path: Path, collector: ExampleCollector) -> None:
    """Read a pos/neg pair: the .neg file gives label 0 and the .pos file label 1.

    Raises:
        DataError: As :func:`find_posneg_pair` and :func:`read_line_file` do,
            or if both names lead to one file, whose reviews would get both
            labels.
    """
    negative, positive = find_posneg_pair(path)
    try:
        same = os.path.samefile(negative, positive)
    except OSError as err:
        raise DataError(f"{path}: cannot read the pair: {err}") from err
    if same:
        raise DataError(
            f"{negative} and {positive} are the same file (through a link), so "
            "each review would be both negative and positive; put the negative "
            "reviews in the .neg file and the positive ones in the .pos file"
        )
    read_line_file(negative, 0, collector)
    read_line_file(positive, 1, collector)
