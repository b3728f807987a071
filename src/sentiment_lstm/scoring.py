"""Scoring of review files in bounded memory: ``score_file(model, input, output)``.

A CSV, TSV, JSON Lines or plain text file is read in chunks of rows. Each
chunk is tokenized in one ``encode_packed`` call and scored in batches of
similar length. With ONNX Runtime the batches are queued on the model's
threads, and the main thread reads and tokenizes the next chunk while they
run. A chunk is written once its scores are in. At most two chunks are held
at a time, so memory stays flat whatever the file size.

Every input row that parses comes out, in input order, with its other columns
unchanged and four columns appended: ``positive``, ``negative``, ``label`` and
``error``. A row whose text cannot be scored (empty, missing, not a string, an
undecodable byte) keeps its place with empty scores and the reason in
``error``. Rows that do not parse at all (a CSV row with the wrong number of
fields, a line that is not a JSON object) raise DataError with file and line.
With ``skip_bad_rows`` they are left out and counted instead, as the training
readers do.

Input is read with the conventions of :mod:`sentiment_lstm.data`: UTF-8 with or
without BOM, also with a few invalid bytes, else cp1252 (see
:class:`sentiment_lstm.data.decoding.EncodingScan`); text column detection by
:func:`sentiment_lstm.data.columns.choose_columns`; lines split on ``"\\n"``
only, or on ``"\\r"`` in a plain text file without ``"\\n"``. Output is UTF-8.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import errno
import gc
import itertools
import json
import logging
import operator
import os
import re
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

from sentiment_lstm import interrupts
from sentiment_lstm.data.collector import SKIP_HINT
from sentiment_lstm.data.columns import choose_columns, keys_matching, record_key
from sentiment_lstm.data.decoding import (
    DecodedText,
    Encoding,
    invalid_byte_reason,
    log_carriage_return_line_ends,
    open_text,
    scan_file,
    warn_about_carriage_returns,
)
from sentiment_lstm.data.delimited import (
    FIELD_SIZE_LIMIT,
    parsed_rows,
    read_header,
    strict_reader,
)
from sentiment_lstm.data.fields import json_type_name
from sentiment_lstm.data.jsonl import (
    COLUMN_SEARCH_RECORDS,
    invalid_json_row,
    record_from_pairs,
    repeated_field_row,
)
from sentiment_lstm.data.readers import detect_format, require_regular_file
from sentiment_lstm.data.records import DataError, ReadOptions
from sentiment_lstm.files import (
    stderr_is_terminal,
    closed_quietly_on_error,
    descriptor_stream,
    file_mode,
    inherited_descriptor,
    on_read_only_file_system,
    write_failure_advice,
)
from sentiment_lstm.predictor import EMPTY_REVIEW, PendingScores
from sentiment_lstm.text import TOO_LONG_REASON

if TYPE_CHECKING:
    from sentiment_lstm.predictor import SentimentModel
    from sentiment_lstm.text import PackedTokenIds

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Input formats that score_file streams. The predict command streams pos/neg
# pairs and folders of review files itself.
STREAM_FORMATS = ("csv", "tsv", "jsonl", "lines")
OUTPUT_FORMATS = ("csv", "tsv", "jsonl", "text")
OUTPUT_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}

DEFAULT_CHUNK_ROWS = 8192
# Rows of the first chunk, which the model waits for before it starts.
FIRST_CHUNK_ROWS = 1024
# A chunk also ends once its rows reach this many characters, so that a
# file of long reviews or wide rows takes no more memory than one of short
# ones. Chunks of rt-polarity's 8,192 rows contain about 1 million characters.
CHUNK_CHARS = 2**22
DEFAULT_BATCH_SIZE = 256

SCORE_FIELDS = ("positive", "negative", "label", "error")
# Prefix of the score columns when the input already has a column named like one.
SCORE_FIELD_PREFIX = "predicted_"
# The score keys in either spelling, which a JSONL record kept as a bad row
# must lack, so that adding the scores repeats no key.
_ALL_SCORE_KEYS = frozenset(SCORE_FIELDS).union(
    SCORE_FIELD_PREFIX + name for name in SCORE_FIELDS
)
# Column of the review in the output of a plain text input file.
LINES_TEXT_FIELD = "text"

# Error of a row that is an empty line of a CSV, TSV or JSONL file.
EMPTY_LINE = "empty line"
# The effect of --skip-bad-rows on a row that does not parse, when a file is scored.
SCORING_SKIP_HINT = "--skip-bad-rows to write such rows in place with their error"
# The error of a review of a text or JSONL file over the CSV field limit.
TOO_LONG = TOO_LONG_REASON

PREVIEW_CHARACTERS = 60

# A byte invalid in the file's encoding, as the reader's surrogateescape keeps it.
_INVALID_BYTE = re.compile("[\udc80-\udcff]")
_INVALID_BYTE_OR_NUL = re.compile("[\x00\udc80-\udcff]")
# Newer chunks that stay queued for scoring while the oldest one is written.
_SCORING_CHUNKS = 1
# Bad rows quoted in the warning when rows are left out.
_LOGGED_BAD_ROWS = 5

# Error handler for the output: an undecodable input byte, kept by the reader
# as a lone surrogate, is written as U+FFFD so the output stays valid UTF-8.
# Other encodings get "?" for any character they cannot encode.
OUTPUT_ERRORS = "sentiment_lstm.replace_surrogates"
_UTF8_REPLACEMENT_CHARACTER = "\ufffd".encode("utf-8")


def _replace_unencodable(error: UnicodeError) -> tuple[str | bytes, int]:
    if not isinstance(error, UnicodeEncodeError):
        raise error
    count = error.end - error.start
    # CPython's UTF-8 encoder accepts only ASCII text or bytes from a handler.
    if codecs.lookup(error.encoding).name == "utf-8":
        return _UTF8_REPLACEMENT_CHARACTER * count, error.end
    return "?" * count, error.end


codecs.register_error(OUTPUT_ERRORS, _replace_unencodable)


@dataclass(frozen=True)
class ScoringSummary:
    """Row counts and timing of one ``score_file`` run.

    Attributes:
        rows: Rows written, scored or not.
        scored: Rows with scores.
        unscored: Rows written with an ``error`` instead of scores.
        unparsed: Rows that did not parse, written in their place with empty
            fields and the reason in ``error`` (``skip_bad_rows``).
        encoding: Encoding the input was decoded with.
        seconds: Wall-clock time from opening the input to closing the output.
    """

    rows: int
    scored: int
    unscored: int
    unparsed: int
    encoding: str
    seconds: float


def output_format_for(path: Path | None) -> str:
    """Choose the output format from a file extension; ``text`` for stdout."""
    if path is None:
        return "text"
    return OUTPUT_EXTENSIONS.get(path.suffix.lower(), "text")


def detect_encoding(path: Path) -> str:
    """Find the encoding of a data file by the rules of ``decode_file``.

    A UTF-8 BOM means ``utf-8-sig``. Otherwise a file that is valid UTF-8, or
    whose invalid bytes are fewer than its valid multi-byte UTF-8 characters,
    is ``utf-8``, and any other file is ``cp1252`` (see ``EncodingScan``). The
    file is read in 1 MiB blocks, so memory does not grow with its size.

    Raises:
        DataError: If the file is UTF-16, with or without a BOM, is binary, or
            cannot be read.
    """
    return _scan_input(path).encoding.name


@dataclass(frozen=True)
class _InputScan:
    """What the scan of an input file found before it is read for scoring.

    Attributes:
        encoding: Codec and error handler to open the file with.
        carriage_returns_only: Whether the file has "\\r" but no "\\n" bytes,
            so a plain text file's lines end at "\\r" (old Mac OS line ends).
        lone_carriage_returns: "\\r" bytes not followed by "\\n".
        lines: Lines of the file, at its line ends ("\\r" alone where it
            has no "\\n"); the rows of a file are at most as many.
    """

    encoding: Encoding
    carriage_returns_only: bool
    lone_carriage_returns: int
    lines: int = 0


def _scan_input(path: Path, source: str | None = None) -> _InputScan:
    scan = scan_file(path, source)
    carriage_returns_only = scan.has_carriage_return and not scan.has_line_feed
    if carriage_returns_only:
        lines = scan.lone_carriage_returns + (not scan.ends_in_carriage_return)
    else:
        lines = scan.line_feeds + (not scan.ends_in_line_feed)
    return _InputScan(
        scan.result(), carriage_returns_only, scan.lone_carriage_returns, lines
    )


def score_file(
    model: SentimentModel,
    input_path: str | Path,
    output: str | Path | TextIO,
    *,
    output_format: str | None = None,
    options: ReadOptions = ReadOptions(require_labels=False),
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool | None = None,
    source: str | None = None,
) -> ScoringSummary:
    """Score every review of a CSV, TSV, JSONL or plain text file.

    Args:
        model: The loaded model.
        input_path: The file to score. Its format comes from
            ``options.format`` or from its extension.
        output: A path, or an open text stream such as ``sys.stdout``. A path
            is written under a temporary name and renamed when complete, so a
            failed run leaves no partial file.
        output_format: ``csv``, ``tsv`` or ``jsonl`` keep the input's columns
            and append the scores; ``text`` writes one readable line per row.
            Default: from the extension of an output path, else ``text``.
        options: Format, text column and ``skip_bad_rows``; label options are
            ignored, because a label column is kept like any other column.
        chunk_rows: Rows read, tokenized and scored at a time; memory use
            grows with it.
        batch_size: Reviews per forward pass.
        progress: Show a progress bar of rows on stderr. Default: only when
            stderr is a terminal.
        source: Name of the input in messages and logs, such as ``stdin``
            for a temporary copy of it. Default: ``input_path``.

    Returns:
        Counts of the rows written, scored and left out.

    Raises:
        DataError: If the input cannot be read, has no text column, or has a
            row that does not parse while ``options.skip_bad_rows`` is unset.
            The message names the file and line. Also if the output cannot be
            written. With a stream, the message states that the stream may
            contain part of the results.
        BrokenPipeError: If the output stream is a pipe whose reader has
            exited.
        ValueError: If an argument is invalid, e.g. JSONL input with CSV
            output, or the output path is the input path.
    """
    started = time.perf_counter()
    input_path = Path(input_path)
    output_path = None if _is_stream(output) else Path(output)
    output_format = output_format or output_format_for(output_path)
    _check_arguments(input_path, output_path, output_format, chunk_rows, batch_size)
    data_format = options.format or detect_format(input_path, "--input-format")
    source = source or str(input_path)
    _check_input(input_path, data_format, options, source)
    if data_format == "jsonl" and output_format in ("csv", "tsv"):
        raise ValueError(
            f"JSONL input {source} cannot be written as {output_format}, "
            "because its records may have different keys; write JSONL output "
            "(a .jsonl output path or --format jsonl)"
        )

    scan = _scan_input(input_path, source)
    encoding = scan.encoding
    with _open_input(input_path, data_format, scan, source) as stream:
        reader = _make_reader(
            source,
            data_format,
            encoding,
            stream,
            options,
            count_carriage_returns=scan.lone_carriage_returns > 0
            and not scan.carriage_returns_only,
        )
        # Each row takes at least one line, and a CSV or TSV file's header
        # one more, so this is the most rows the file can have.
        max_rows = scan.lines - (data_format in ("csv", "tsv"))

        def run(out: TextIO) -> _Counts:
            return _run(
                model,
                reader,
                out,
                output_format,
                chunk_rows,
                batch_size,
                progress_bar(progress, max(max_rows, 0)),
            )

        if output_path is None:
            counts = write_to_stream(
                "stdout" if output is sys.stdout else "the output stream",
                output,
                run,
            )
        else:
            counts = write_output(output_path, run)

    reader.bad_rows.log_summary()
    reader.replaced_bytes.log_summary()
    summary = ScoringSummary(
        rows=counts.rows,
        scored=counts.rows - counts.unscored,
        unscored=counts.unscored,
        unparsed=reader.bad_rows.count,
        encoding=encoding.name,
        seconds=time.perf_counter() - started,
    )
    # The last score field is the error's: "error", or "predicted_error" where
    # the input has a column of that name.
    _log_summary(source, summary, output_format, reader.score_fields[-1])
    return summary


# ---------------------------------------------------------------------------
# argument checks


def _is_stream(output: object) -> bool:
    return hasattr(output, "write")


def _check_arguments(
    input_path: Path,
    output_path: Path | None,
    output_format: str,
    chunk_rows: int,
    batch_size: int,
) -> None:
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(
            f"output format must be one of {', '.join(OUTPUT_FORMATS)}, "
            f"got {output_format!r}"
        )
    for name, value in (("chunk_rows", chunk_rows), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if output_path is not None and same_file(input_path, output_path):
        raise ValueError(
            f"the output {output_path} is the input file; write the scores to "
            "another path"
        )


def same_file(first: Path, second: Path) -> bool:
    """Return whether ``second`` exists and is the same file as ``first``.

    Links and other spellings of a path are resolved, so a hard or symbolic
    link to the input counts as the input.
    """
    try:
        return second.exists() and os.path.samefile(first, second)
    except OSError:
        return False


def _check_input(
    path: Path, data_format: str, options: ReadOptions, source: str
) -> None:
    if data_format not in STREAM_FORMATS:
        raise ValueError(
            f"{source}: streaming scoring reads {', '.join(STREAM_FORMATS)} files, "
            f"not {data_format}; read it with sentiment_lstm.data.read_texts "
            "and call SentimentModel.predict"
        )
    if data_format == "lines" and options.text_column is not None:
        raise DataError(
            f"{source}: --text-column only applies to CSV, TSV and JSONL files, not "
            "to a plain text file; remove it"
        )
    require_regular_file(path, data_format)


# ---------------------------------------------------------------------------
# reading


@dataclass
class _Chunk:
    """Rows read together.

    Attributes:
        records: The rows as they will be written: a list of fields for CSV,
            TSV and plain text, the line itself for JSONL.
        texts: The review of each row as found, for previews.
        errors: Why a row cannot be scored, or None.
        lines: The input line where each row starts, for the errors.
        replaced: (row index, place) of each row whose review is valid but
            whose other fields have invalid bytes; see ``_ReplacedBytes``.
        chars: Characters of the rows, all their fields counted.
    """

    records: list[Any] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    errors: list[str | None] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    replaced: list[tuple[int, str]] = field(default_factory=list)
    chars: int = 0

    def add(
        self,
        line: int,
        record: Any,
        text: str,
        error: str | None,
        size: int | None = None,
    ) -> None:
        """Append one row; ``size`` is its characters, by default the review's."""
        self.lines.append(line)
        self.records.append(record)
        self.texts.append(text)
        self.errors.append(error)
        self.chars += len(text) if size is None else size

    def full(self, limit: int) -> bool:
        """Return whether the chunk has ``limit`` rows or ``CHUNK_CHARS`` characters."""
        return len(self.records) >= limit or self.chars >= CHUNK_CHARS

    def texts_to_score(self) -> list[str]:
        """Return the texts with unscorable rows blanked, so they get no tokens."""
        return [
            text if error is None else ""
            for text, error in zip(self.texts, self.errors)
        ]


class _BadRows:
    """Rows that do not parse: raised at once, or counted with ``skip_bad_rows``.

    With ``skip_bad_rows`` the reader writes each such row in its place, with
    :attr:`last_reason` as its error. Its fields are empty, unless it is a
    JSONL record that parsed or a CSV or TSV row of another number of fields
    than the header, whose fields are kept.
    """

    def __init__(self, source: str, skip: bool) -> None:
        self.source = source
        self.skip = skip
        self.count = 0
        # Physical lines spanned by the rows that did not parse.
        self.lines = 0
        self.first: list[str] = []
        self.last_reason = ""

    def reject(self, line: int, reason: str, fix: str, *, lines: int = 1) -> None:
        if not self.skip:
            # The readers' fixes offer --skip-bad-rows as training reads it.
            fix = fix.replace(SKIP_HINT, SCORING_SKIP_HINT)
            raise DataError(f"{self.source} line {line}: {reason}; {fix}")
        self.count += 1
        self.lines += lines
        self.last_reason = reason
        if len(self.first) < _LOGGED_BAD_ROWS:
            self.first.append(f"line {line}: {reason}")

    def log_summary(self) -> None:
        if not self.count:
            return
        span = "" if self.lines == self.count else f", spanning {self.lines} lines,"
        first = (
            "" if self.count <= len(self.first) else f" (the first {len(self.first)})"
        )
        if self.count == 1:
            written = "1 row of %s%s did not parse; it was written"
        else:
            written = f"{self.count} rows of %s%s did not parse; each was written"
        logger.warning(
            written + " in its place with the reason as its error%s: %s",
            self.source,
            span,
            first,
            "; ".join(self.first),
        )


class _ReplacedBytes:
    """Scored rows whose review is valid but whose other fields have invalid bytes.

    The review of such a row is scored, while the output has U+FFFD in place
    of each invalid byte elsewhere (see ``OUTPUT_ERRORS``), so a warning names
    the rows. Only files decoded with invalid bytes are checked. A reader
    finds the places with :meth:`find_in_fields` or :meth:`find_in_record`,
    and the rows that get a score are noted once they are scored.

    Attributes:
        possible: Whether the file has invalid bytes at all.
    """

    def __init__(self, source: str, possible: bool) -> None:
        self.source = source
        self.possible = possible
        self.count = 0
        self.first: list[str] = []

    def check_header(self, names: list[str]) -> None:
        """Warn about column names with invalid bytes, which the output replaces."""
        if not self.possible:
            return
        positions = [
            f"column {index + 1}"
            for index, name in enumerate(names)
            if _INVALID_BYTE.search(name)
        ]
        if positions:
            logger.warning(
                "the header of %s has invalid bytes in %s, written as U+FFFD "
                "in the output; save the file as UTF-8 to keep those characters",
                self.source,
                ", ".join(positions),
            )

    def find_in_fields(
        self, line: int, row: list[str], names: list[str], text_index: int
    ) -> str | None:
        """Return the place of the first invalid byte outside the review, or None."""
        for index, (name, value) in enumerate(zip(names, row)):
            if index != text_index and _INVALID_BYTE.search(value):
                # A name with an invalid byte of its own is given by position.
                column = f"{index + 1}" if _INVALID_BYTE.search(name) else repr(name)
                return f"line {line} (column {column})"
        return None

    def find_in_record(self, line: int, record: str) -> str | None:
        """Return the place of a JSON line with an invalid byte, or None.

        Only called for a record whose review has no invalid byte.
        """
        return f"line {line}" if _INVALID_BYTE.search(record) else None

    def note(self, place: str) -> None:
        """Count a scored row with invalid bytes outside its review."""
        self.count += 1
        if len(self.first) < _LOGGED_BAD_ROWS:
            self.first.append(place)

    def log_summary(self) -> None:
        if not self.count:
            return
        rows = "1 scored row" if self.count == 1 else f"{self.count} scored rows"
        first = (
            "" if self.count <= len(self.first) else f" (the first {len(self.first)})"
        )
        logger.warning(
            "%s of %s %s invalid bytes outside the review, written as U+FFFD "
            "in the output%s: %s; save the file as UTF-8 to keep those "
            "characters",
            rows,
            self.source,
            "has" if self.count == 1 else "have",
            first,
            ", ".join(self.first),
        )


def _open_input(path: Path, data_format: str, scan: _InputScan, source: str) -> TextIO:
    # Undecodable bytes become lone surrogates where the scan found any, so
    # that only the rows that contain them fail.
    encoding = scan.encoding
    # Every format splits on "\n" only, as csv_newline and LineFile.reviews
    # do, and a file with old Mac OS line ends on "\r", as LineFile does.
    newline = "\n"
    if data_format in ("csv", "tsv") and scan.carriage_returns_only:
        newline = ""
    elif data_format in ("lines", "jsonl") and scan.carriage_returns_only:
        log_carriage_return_line_ends(source)
        newline = "\r"
    return open_text(path, encoding, newline, source)


class _Reader:
    """Rows of one input file, read lazily in chunks.

    Attributes:
        fields: Output column names of each record before the scores, or None
            for JSONL, whose records keep their own keys.
        score_fields: Names of the four appended columns.
        bad_rows: Rows left out.
        replaced_bytes: Scored rows with invalid bytes outside the review.
    """

    fields: list[str] | None
    score_fields: tuple[str, ...]

    def __init__(
        self, source: str, encoding: Encoding, stream: TextIO, skip: bool
    ) -> None:
        self.source = source
        self.stream = stream
        self.bad_rows = _BadRows(self.source, skip)
        # invalid_byte_reason reads only the encoding and errors of a DecodedText.
        self._decoded = DecodedText("", encoding.name, encoding.errors)
        self.replaced_bytes = _ReplacedBytes(
            self.source, self._decoded.may_contain_invalid_bytes
        )

    def chunks(self, chunk_rows: int) -> Iterator[_Chunk]:
        raise NotImplementedError

    def _new_chunk(self) -> _Chunk:
        self._unfinished = _Chunk()
        return self._unfinished

    def rows_before_failure(self) -> _Chunk | None:
        """Return the rows read after the last chunk, when reading failed.

        They are the rows between the last chunk that :meth:`chunks` yielded
        and the bad row or read error, which a stream output still gets.
        """
        chunk = getattr(self, "_unfinished", None)
        if chunk is None or not chunk.records or not self._writable():
            return None
        return chunk

    def _writable(self) -> bool:
        """Return whether rows can be written, which JSONL needs a record for."""
        return True

    def _text_error(self, text: str) -> str | None:
        """Return why a review cannot be scored: its length or invalid bytes."""
        if len(text) > FIELD_SIZE_LIMIT:
            return TOO_LONG
        return invalid_byte_reason(text, self._decoded)


class _DelimitedReader(_Reader):
    """CSV or TSV with a header row, parsed like ``read_delimited``."""

    def __init__(
        self,
        source: str,
        encoding: Encoding,
        stream: TextIO,
        options: ReadOptions,
        delimiter: str,
    ) -> None:
        super().__init__(source, encoding, stream, options.skip_bad_rows)
        self._csv = strict_reader(stream, delimiter)
        self._delimiter = delimiter
        header, columns = read_header(self._csv, options, self.source)
        self.fields = header
        self.replaced_bytes.check_header(header)
        self._text_index = header.index(columns.text)
        self.score_fields = _score_fields(header, self.source)

    def chunks(self, chunk_rows: int) -> Iterator[_Chunk]:
        text_index = self._text_index
        width = len(self.fields)

        def reject(
            line: int,
            reason: str,
            fix: str,
            *,
            lines: int = 1,
            fields: list[str] | None = None,
            line_text: str | None = None,
        ) -> None:
            self.bad_rows.reject(line, reason, fix, lines=lines)
            error = self.bad_rows.last_reason
            # A row of another width keeps its fields in the header's columns,
            # and those past the last column in its error.
            row = list(fields or ())[:width]
            if fields is not None and len(fields) > width:
                extra = fields[width:]
                error += (
                    f"; the field{'s' if len(extra) > 1 else ''} past the last "
                    f"column: {json.dumps(extra, ensure_ascii=False)}"
                )
            size = sum(map(len, row))
            # A record that does not parse keeps the text of its first line
            # in the error. The lines after that line are read again on their
            # own where the record ran past it.
            if line_text is not None:
                error += _line_text_note(line_text)
                size += len(line_text)
            row += [""] * (width - len(row))
            chunk.add(line, row, "", error, size)

        rows = parsed_rows(
            self._csv, width, self._delimiter, self.source, reject, keep_empty=True
        )
        limits = _chunk_limits(chunk_rows)
        limit = next(limits)
        chunk = self._new_chunk()
        for line, row in rows:
            if row:
                text = row[text_index]
                error = self._text_error(text)
                if error is None and self.replaced_bytes.possible:
                    place = self.replaced_bytes.find_in_fields(
                        line, row, self.fields, text_index
                    )
                    if place is not None:
                        chunk.replaced.append((len(chunk.records), place))
            else:
                # An empty line keeps its place as a row of empty fields.
                row = [""] * width
                text, error = "", EMPTY_LINE
            chunk.add(line, row, text, error, sum(map(len, row)))
            if chunk.full(limit):
                yield chunk
                chunk = self._new_chunk()
                limit = next(limits)
        if chunk.records:
            yield chunk


class _LinesReader(_Reader):
    """Plain text with one review per line; every line is a row.

    With ``count_carriage_returns``, which the caller sets when the scan
    found a "\\r" without a "\\n" after it, the lines that keep one inside
    are counted and a warning names them at the end.
    """

    def __init__(
        self,
        source: str,
        encoding: Encoding,
        stream: TextIO,
        count_carriage_returns: bool = False,
    ) -> None:
        super().__init__(source, encoding, stream, skip=False)
        self.fields = [LINES_TEXT_FIELD]
        self.score_fields = SCORE_FIELDS
        self._count_carriage_returns = count_carriage_returns

    def chunks(self, chunk_rows: int) -> Iterator[_Chunk]:
        limits = _chunk_limits(chunk_rows)
        limit = next(limits)
        chunk = self._new_chunk()
        carriage_returns = 0
        # Blank lines wait for a later line, because those at the end of the
        # file are left out, as the training readers do.
        blank: list[tuple[int, str]] = []
        for number, line in enumerate(self.stream, start=1):
            line = _strip_line_end(line)
            if not line.strip():
                blank.append((number, line))
                continue
            for blank_number, blank_line in blank:
                chunk.add(blank_number, [blank_line], blank_line, None)
            blank.clear()
            chunk.add(number, [line], line, self._text_error(line))
            if chunk.full(limit):
                if self._count_carriage_returns:
                    carriage_returns += _lines_with_carriage_return(chunk.texts)
                yield chunk
                chunk = self._new_chunk()
                limit = next(limits)
        if self._count_carriage_returns:
            carriage_returns += _lines_with_carriage_return(chunk.texts)
            warn_about_carriage_returns(carriage_returns, self.source)
        _log_blank_end(len(blank), self.source)
        if chunk.records:
            yield chunk


# The maximum characters of an unparsed line that its error repeats. JSON and
# CSV quoting can make a field several times as long, and a field must stay
# under FIELD_SIZE_LIMIT for the output to be read again.
_LINE_TEXT_CHARS = FIELD_SIZE_LIMIT // 8


def _line_text_note(line: str) -> str:
    """Return "; the text of the line: " and the line as a JSON string.

    A line over ``_LINE_TEXT_CHARS`` characters is cut to that many, and the
    note states both lengths.
    """
    if len(line) <= _LINE_TEXT_CHARS:
        return f"; the text of the line: {json.dumps(line, ensure_ascii=False)}"
    cut = json.dumps(line[:_LINE_TEXT_CHARS], ensure_ascii=False)
    return (
        f"; the first {_LINE_TEXT_CHARS:,} of the line's {len(line):,} "
        f"characters: {cut}"
    )


def _lines_with_carriage_return(texts: list[str]) -> int:
    # A "\\r" next to the line end goes with the whitespace around the review.
    return sum("\r" in text.strip() for text in texts)


class _JsonlReader(_Reader):
    """JSON Lines.

    The score keys are named from the first valid record and the text key
    is chosen from the first record that has a text field. Reading fails,
    with nothing written, when none of the first ``COLUMN_SEARCH_RECORDS``
    records has one, as ``read_examples`` does.
    """

    def __init__(
        self, source: str, encoding: Encoding, stream: TextIO, options: ReadOptions
    ) -> None:
        super().__init__(source, encoding, stream, options.skip_bad_rows)
        self._options = options
        self.fields = None
        self.score_fields = SCORE_FIELDS
        self._score_keys: frozenset[str] | None = None
        self._text_key: str | None = None
        self._records_without_text_key = 0
        # The hook records repeated keys, of which json.loads keeps the last value.
        self._decode = json.JSONDecoder(object_pairs_hook=record_from_pairs).decode

    def chunks(self, chunk_rows: int) -> Iterator[_Chunk]:
        limits = _chunk_limits(chunk_rows)
        limit = next(limits)
        chunk = self._new_chunk()
        self._first_failure: DataError | None = None
        # Blank lines wait for a later record, because those at the end of
        # the file are left out, as the training readers do.
        blank: list[int] = []
        for number, line in enumerate(self.stream, start=1):
            line = _strip_line_end(line)
            if not line.strip():
                blank.append(number)
                continue
            for blank_number in blank:
                # An empty line keeps its place as a record with scores only.
                chunk.add(blank_number, "{}", "", EMPTY_LINE, len(EMPTY_LINE))
            blank.clear()
            parsed = self._parse(number, line)
            if parsed is None:
                # With --skip-bad-rows: a record of the scores and the
                # reason, which ends with the text of the line.
                text = ""
                error = self.bad_rows.last_reason + _line_text_note(line)
                line = "{}"
            else:
                text, error = parsed
                if self.replaced_bytes.possible and error is None:
                    place = self.replaced_bytes.find_in_record(number, line)
                    if place is not None:
                        chunk.replaced.append((len(chunk.records), place))
            size = max(len(line), len(text), len(error or ""))
            chunk.add(number, line, text, error, size)
            # The empty lines before the first record wait for it, so that
            # they are written with the score keys it names, and no row is
            # written before the text key is known.
            if chunk.full(limit) and self._writable():
                yield chunk
                chunk = self._new_chunk()
                limit = next(limits)
        if self._text_key is None and self._first_failure is not None:
            raise self._first_failure
        _log_blank_end(len(blank), self.source)
        if chunk.records:
            yield chunk

    def _writable(self) -> bool:
        return self._score_keys is not None and self._text_key is not None

    def _parse(self, number: int, line: str) -> tuple[str, str | None] | None:
        """Return the text and error of a record, or None for a bad row."""
        try:
            record = self._decode(line)
        except (ValueError, RecursionError) as err:
            self.bad_rows.reject(number, *invalid_json_row(err, line))
            return None
        if not isinstance(record, dict):
            self.bad_rows.reject(
                number,
                f"expected a JSON object, found a JSON {json_type_name(record)}",
                f'write one object per line such as {{"text": "..."}}, '
                f"or use {SCORING_SKIP_HINT}",
            )
            return None
        if self._text_key is None:
            try:
                self._text_key = self._choose_text_key(record, number)
            except DataError as err:
                # The text key comes from the first record that has a text
                # field. Records before it keep their place, unscored.
                self._first_failure = self._first_failure or err
                self._records_without_text_key += 1
                if self._records_without_text_key >= COLUMN_SEARCH_RECORDS:
                    raise self._first_failure from None
        text_key = (
            None if self._text_key is None else record_key(record, self._text_key)
        )
        if text_key is not None and text_key in record.repeated_keys:
            # Checked before the record can name the score keys: a bad row
            # does not choose them.
            self.bad_rows.reject(
                number, *repeated_field_row(text_key, record.repeated_keys)
            )
            if _ALL_SCORE_KEYS.isdisjoint(record):
                # The record is valid JSON, so it is written whole with its error.
                return "", self.bad_rows.last_reason
            return None
        if self._score_keys is None:
            # Raises DataError when the record has keys named like both the
            # score keys and their prefixed form, as a CSV header would.
            self.score_fields = _score_fields(list(record), self.source, "keys")
            self._score_keys = frozenset(self.score_fields)
        if not self._score_keys.isdisjoint(record):
            clashing = sorted(self._score_keys.intersection(record))
            self.bad_rows.reject(
                number,
                f"the record already has the key {clashing[0]!r}, which the "
                "scores would overwrite",
                f"rename that key, or use {SCORING_SKIP_HINT}",
            )
            return None
        if text_key is None:
            keys = ", ".join(repr(key) for key in record) or "none"
            if self._text_key is not None:
                return "", f"missing text field {self._text_key!r}; the keys: {keys}"
            return "", f"no text field among the keys: {keys}"
        return self._text_of(record, text_key, line)

    def _choose_text_key(self, record: dict[str, Any], number: int) -> str:
        columns = choose_columns(
            list(record),
            self._options,
            self.source,
            f"the record on line {number} has fields",
        )
        return columns.text

    def _text_of(
        self, record: dict[str, Any], key: str, line: str
    ) -> tuple[str, str | None]:
        """Return the review under ``key`` and why it cannot be scored, or None.

        Only bytes of the line itself are invalid. A NUL that the JSON escape
        \\u0000 gives is text, which the HTTP service scores too. A lone
        surrogate from an escape is encoded as U+FFFD, as in a file whose
        bytes are all valid, although the HTTP service rejects a request with
        one.
        """
        value = record.get(key)
        if value is None and key in record:
            return "", f"text field {key!r} is null"
        if value is None:
            similar = keys_matching(record, key)
            if similar:
                listed = ", ".join(repr(name) for name in similar)
                return "", (
                    f"missing text field {key!r}: the keys {listed} match it "
                    "when case is ignored, so none is used"
                )
            return "", f"missing text field {key!r}"
        if not isinstance(value, str):
            return (
                json.dumps(value, ensure_ascii=False),
                f"text field {key!r} is a JSON {json_type_name(value)}, not a string",
            )
        if _INVALID_BYTE_OR_NUL.search(line) is None:
            return value, TOO_LONG if len(value) > FIELD_SIZE_LIMIT else None
        return value, self._text_error(value)


def _log_blank_end(lines: int, source: str) -> None:
    """Log the blank lines at the end of a file, which get no row."""
    if lines:
        logger.info(
            "left out %d blank line%s at the end of %s",
            lines,
            "" if lines == 1 else "s",
            source,
        )


def _chunk_limits(chunk_rows: int) -> Iterator[int]:
    """Yield the row count of each chunk: a small first one, then chunk_rows.

    The model waits for the first chunk to be read and tokenized, so a small
    one gets it started sooner.
    """
    yield min(chunk_rows, FIRST_CHUNK_ROWS)
    yield from itertools.repeat(chunk_rows)


def _make_reader(
    source: str,
    data_format: str,
    encoding: Encoding,
    stream: TextIO,
    options: ReadOptions,
    count_carriage_returns: bool = False,
) -> _Reader:
    if data_format == "lines":
        return _LinesReader(
            source, encoding, stream, count_carriage_returns=count_carriage_returns
        )
    if data_format == "jsonl":
        return _JsonlReader(source, encoding, stream, options)
    delimiter = "\t" if data_format == "tsv" else ","
    return _DelimitedReader(source, encoding, stream, options, delimiter)


def _strip_line_end(line: str) -> str:
    if line.endswith("\n"):
        line = line[:-1]
    if line.endswith("\r"):
        line = line[:-1]
    return line


def _score_fields(
    names: Sequence[str], source: str, noun: str = "columns"
) -> tuple[str, ...]:
    """Name the appended columns so that none replaces an input column.

    ``noun`` is what the messages call the names: columns, or keys of JSON
    records.
    """
    input_names = set(names)
    if input_names.isdisjoint(SCORE_FIELDS):
        return SCORE_FIELDS
    prefixed = tuple(SCORE_FIELD_PREFIX + name for name in SCORE_FIELDS)
    if not input_names.isdisjoint(prefixed):
        raise DataError(
            f"{source}: the input has {noun} named like both "
            f"{', '.join(SCORE_FIELDS)} and {', '.join(prefixed)}, so the scores "
            f"have no free {noun}; rename one of those {noun}"
        )
    logger.info(
        "%s already has %s named like the score %s, so the scores are written as %s",
        source,
        noun,
        noun,
        ", ".join(prefixed),
    )
    return prefixed


# ---------------------------------------------------------------------------
# scoring and writing


@dataclass
class _Counts:
    rows: int = 0
    unscored: int = 0


@dataclass(frozen=True)
class _Scores:
    """Formatted scores of one chunk; empty strings on unscored rows."""

    positive: list[str]
    negative: list[str]
    labels: list[str]
    errors: list[str]
    unscored: int


def _format_scores(positive: Sequence[float], chunk: _Chunk) -> _Scores:
    """Format the scores of a chunk's rows, and each unscored row's line and reason."""
    positive_text = []
    negative_text = []
    labels = []
    reasons = []
    unscored = 0
    for probability, error, line in zip(positive, chunk.errors, chunk.lines):
        if error is None and probability == probability:
            positive_text.append(f"{probability:.6f}")
            negative_text.append(f"{1.0 - probability:.6f}")
            labels.append("positive" if probability >= 0.5 else "negative")
            reasons.append("")
            continue
        unscored += 1
        positive_text.append("")
        negative_text.append("")
        labels.append("")
        reasons.append(f"line {line}: {error or EMPTY_REVIEW}")
    return _Scores(positive_text, negative_text, labels, reasons, unscored)


def _scored_rows(
    chunk: _Chunk, scores: _Scores
) -> Iterator[tuple[Any, str, str, str, str]]:
    """Yield (record, positive, negative, label, error) for each row of a chunk."""
    return zip(
        chunk.records,
        scores.positive,
        scores.negative,
        scores.labels,
        scores.errors,
    )


class DelimitedRowWriter:
    """Write CSV or TSV rows with "\n" line ends, quoting fields as needed.

    Python 3.11's csv module quotes a field with a line break only when the
    line terminator contains that character, so with "\n" a bare "\r" would
    go out unquoted and split the row for every reader. A row with a "\r" in
    any field is therefore written with every field quoted; other rows get
    the usual minimal quoting.

    Args:
        stream: Text stream opened with ``newline=""``.
        delimiter: ``","`` or ``"\t"``.
    """

    def __init__(self, stream: TextIO, delimiter: str) -> None:
        dialect = csv.excel_tab if delimiter == "\t" else csv.excel
        self._minimal = csv.writer(stream, dialect, lineterminator="\n")
        self._quote_all = csv.writer(
            stream, dialect, lineterminator="\n", quoting=csv.QUOTE_ALL
        )

    def writerow(self, row: Sequence[str]) -> None:
        """Write one row of str fields."""
        has_return = any(map(operator.contains, row, itertools.repeat("\r")))
        (self._quote_all if has_return else self._minimal).writerow(row)

    def writerows(
        self, rows: Iterable[Sequence[str]], *, may_have_return: bool = True
    ) -> None:
        """Write rows of str fields.

        A caller that has checked that no field contains "\r" passes
        ``may_have_return=False``, which writes all rows in one call.
        """
        if not may_have_return:
            self._minimal.writerows(rows)
            return
        for row in rows:
            self.writerow(row)


class _DelimitedWriter:
    def __init__(self, stream: TextIO, delimiter: str, reader: _Reader) -> None:
        self._rows = DelimitedRowWriter(stream, delimiter)
        self._rows.writerow([*reader.fields, *reader.score_fields])

    def write(self, chunk: _Chunk, scores: _Scores) -> None:
        # Only the input's fields and the error messages can contain a "\r".
        fields = itertools.chain(
            itertools.chain.from_iterable(chunk.records), scores.errors
        )
        self._rows.writerows(
            (
                record + [positive, negative, label, error]
                for record, positive, negative, label, error in _scored_rows(
                    chunk, scores
                )
            ),
            may_have_return=any(map(operator.contains, fields, itertools.repeat("\r"))),
        )


class _JsonlWriter:
    def __init__(self, stream: TextIO, reader: _Reader) -> None:
        self._stream = stream
        self._fields = reader.fields
        self._reader = reader
        if self._fields is not None and len(set(self._fields)) < len(self._fields):
            repeated = sorted(
                {name for name in self._fields if self._fields.count(name) > 1}
            )
            raise DataError(
                f"{reader.source}: the header repeats the column names "
                f"{', '.join(repr(name) for name in repeated)}, so its rows cannot "
                "become JSON objects without losing values; rename the columns or "
                "write CSV or TSV output"
            )

    def write(self, chunk: _Chunk, scores: _Scores) -> None:
        # Read here, not in __init__, because a JSONL reader names the score
        # keys when it reads its first record.
        names = [json.dumps(name) for name in self._reader.score_fields]
        lines = []
        for record, positive, negative, label, error in _scored_rows(chunk, scores):
            if error:
                added = (
                    f"{names[0]}: null, {names[1]}: null, {names[2]}: null, "
                    # Raw, not escaped, so that the stream's error handler
                    # writes U+FFFD for an invalid byte of the input.
                    f"{names[3]}: {json.dumps(error, ensure_ascii=False)}"
                )
            else:
                added = (
                    f"{names[0]}: {positive}, {names[1]}: {negative}, "
                    f'{names[2]}: "{label}"'
                )
            lines.append(self._extend(record, added))
        self._stream.write("\n".join(lines) + "\n")

    def _extend(self, record: Any, added: str) -> str:
        if self._fields is None:
            # The JSON line itself, so every value keeps its exact spelling:
            # the closing brace is replaced by the new keys.
            body = record.rstrip()[:-1].rstrip()
            separator = "" if body.endswith("{") else ", "
            return f"{body}{separator}{added}}}"
        values = json.dumps(dict(zip(self._fields, record)), ensure_ascii=False)
        separator = "" if values == "{}" else ", "
        return f"{values[:-1]}{separator}{added}}}"


class _TextWriter:
    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, chunk: _Chunk, scores: _Scores) -> None:
        lines = []
        for text, positive, label, error in zip(
            chunk.texts, scores.positive, scores.labels, scores.errors
        ):
            probability = float(positive) if positive else None
            lines.append(format_line(text, probability, label or None, error or None))
        self._stream.write("\n".join(lines) + "\n")


def format_line(
    text: str, positive: float | None, label: str | None, error: str | None
) -> str:
    """Format one result as ``87.3% positive  "the plot sags but the cast..."``.

    Args:
        text: The review, shortened to ``PREVIEW_CHARACTERS`` in the line.
        positive: P(positive), or None if the review was not scored.
        label: ``positive`` or ``negative``, or None.
        error: Why the review was not scored, or None.

    Returns:
        The line, without a line break.
    """
    preview = _preview(text)
    if positive is None or label is None:
        return f"    n/a           {preview}  ({error or EMPTY_REVIEW})"
    share = positive if label == "positive" else 1.0 - positive
    return f"{share * 100:5.1f}% {label:<8}  {preview}"


def _preview(text: str) -> str:
    flat = " ".join(text.split())
    if len(flat) > PREVIEW_CHARACTERS:
        flat = flat[: PREVIEW_CHARACTERS - 3].rstrip() + "..."
    return json.dumps(flat, ensure_ascii=False)


def _make_writer(output_format: str, stream: TextIO, reader: _Reader) -> Any:
    if output_format == "text":
        return _TextWriter(stream)
    if output_format == "jsonl":
        return _JsonlWriter(stream, reader)
    return _DelimitedWriter(stream, "\t" if output_format == "tsv" else ",", reader)


def write_output(path: Path, write: Callable[[TextIO], T]) -> T:
    """Run write(stream) on the output path and return its result.

    A regular file is written under a temporary name and renamed when
    complete. A symbolic link is followed, so the file it points to gets the
    scores and the link stays. A device or a named pipe cannot be renamed
    over and is written in place. /dev/stdout, /dev/stderr and /dev/fd/N are
    written through the process's own descriptor, wherever it leads.

    Raises:
        DataError: If the output cannot be written; the message names the
            path, not the temporary name.
    """
    descriptor = inherited_descriptor(path)
    if descriptor is not None:
        try:
            with descriptor_stream(descriptor, OUTPUT_ERRORS) as stream:
                return write_to_stream(str(path), stream, write)
        except BrokenPipeError:
            # The reader has exited, as with "| head", and the caller handles that.
            raise
        except OSError as err:
            raise DataError(
                f"{path}: cannot write the output: {err.strerror or err}; check "
                f"that descriptor {descriptor} is open for writing, or choose "
                "another --output"
            ) from err
    in_place = check_output_path(path)
    if in_place:
        try:
            with (
                open(
                    path, "w", encoding="utf-8", errors=OUTPUT_ERRORS, newline=""
                ) as stream,
                closed_quietly_on_error(stream),
            ):
                return write_to_stream(str(path), stream, write)
        except BrokenPipeError as err:
            raise DataError(
                f"{path}: cannot write the output: its reader has exited "
                f"({err.strerror or err}); {path} may contain part of the results"
            ) from err
        except OSError as err:
            raise DataError(output_error_message(path, err)) from err
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    existed = target.exists()
    try:
        return _write_atomically(target, write)
    except DataError as err:
        state = "is unchanged" if existed else "was not written"
        raise DataError(f"{err}; {path} {state}") from err


class _StreamWriteError(Exception):
    """A write to the output stream failed with ``error``.

    Wrapping it keeps it apart from an OSError of reading the input.
    """

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


class _CountingStream:
    """A text stream that counts the characters written through it.

    A failed write or flush raises :class:`_StreamWriteError`, so that it is
    not mistaken for a failure to read the input. A closed pipe still raises
    BrokenPipeError.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.chars = 0
        # Whether Ctrl-C or SIGTERM stopped a write midway, as in a write
        # to a pipe whose reader is slow, so that part of it may have gone out.
        self.cut_short = False

    def write(self, text: str) -> int:
        written = self._call(self._stream.write, text)
        self.chars += len(text)
        return written

    def flush(self) -> None:
        # A stream of the caller's may have no flush method.
        flush = getattr(self._stream, "flush", None)
        if flush is not None:
            self._call(flush)

    def _call(self, method: Callable[..., T], *args: Any) -> T:
        """Call a write or flush of the stream, turning its errors as above."""
        try:
            return method(*args)
        except BrokenPipeError:
            raise
        except OSError as err:
            raise _StreamWriteError(err) from err
        except KeyboardInterrupt:
            self.cut_short = True
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def write_to_stream(name: str, stream: TextIO, write: Callable[[TextIO], T]) -> T:
    """Run write(stream) on a stream that keeps what it was given, such as stdout.

    Unlike a file written under a temporary name, the rows written before a
    failure or an interruption stay there, so its message states what the
    stream received.

    Raises:
        DataError: As ``write`` does, with a note on what ``name`` received.
            Also if the stream cannot be written or flushed.
        KeyboardInterrupt: As ``write`` does, with the same note.
    """
    counting = _CountingStream(stream)
    try:
        result = write(counting)  # type: ignore[arg-type]
        # A write error of buffered text then gets the same message as others.
        counting.flush()
        return result
    except _StreamWriteError as failure:
        err = failure.error
        if err.errno == errno.EBADF:
            raise DataError(
                f"{name} is not open for writing ({err.strerror or err}), so "
                "nothing was written to it; open it for writing or choose "
                "another --output"
            ) from err
        # A write can fail after part of its text went out, as on a full disk,
        # so how many rows arrived is unknown.
        raise DataError(
            f"{name}: cannot write the output: {err.strerror or err}; {name} may "
            f"contain part of the results{write_failure_advice(err)}"
        ) from err
    except DataError as err:
        received = _received(name, counting.chars, getattr(err, "rows_written", None))
        raise DataError(f"{err}; {received}") from err
    except KeyboardInterrupt as err:
        if counting.cut_short:
            # The interrupted write may have sent part of a row.
            received = (
                f"{name} may contain part of the results, and its last line may "
                "be cut off"
            )
        else:
            rows = getattr(err, "rows_written", None)
            received = _received(name, counting.chars, rows)
        raise KeyboardInterrupt(f"stopped; {received}") from err


def _received(name: str, chars: int, rows: int | None) -> str:
    """Describe what a stream received before a failure: ``rows`` results, if known."""
    if not chars:
        return f"nothing was written to {name}"
    if rows is None:
        return f"what was written to {name} before it stays there"
    if rows == 0:
        return f"only the header was written to {name}"
    first = "the first row" if rows == 1 else f"the first {rows:,} rows"
    return f"the results of {first} were already written to {name}"


def check_output_path(path: Path) -> bool:
    """Check that the output path can be written, before anything is written.

    Returns:
        Whether the output is written in place: a device or a named pipe,
        which cannot be renamed over.

    Raises:
        DataError: If the path cannot be inspected, or names a read-only file.
    """
    try:
        in_place = path.exists() and not path.is_file()
    except OSError as err:
        # Path.exists raises for a name that is too long or a folder that
        # cannot be searched.
        raise DataError(
            f"{path}: cannot write the output: {err.strerror or err}; choose "
            "another --output"
        ) from err
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    if not in_place and target.is_file() and not os.access(target, os.W_OK):
        if on_read_only_file_system(target):
            raise DataError(
                f"{path}: cannot write the output: the file system is mounted "
                "read-only, so write the output to another one"
            )
        # Renaming over the file would replace it although its mode forbids
        # writing, which cp and shell redirection refuse to do.
        raise DataError(
            f"{path}: cannot write the output: the file is read-only; make it "
            "writable (chmod u+w) or choose another --output"
        )
    return in_place


def output_error_message(path: Path, err: OSError) -> str:
    """Describe a failed write of the output file, without temporary names."""
    if path.is_dir():
        return (
            f"{path}: cannot write the output: it is a folder; name a file, "
            f"such as {path / 'scores.csv'}"
        )
    # The nearest existing path above the output: a folder, or a file where
    # the output path needs a folder.
    nearest = next((parent for parent in path.parents if parent.exists()), None)
    if nearest is not None and not nearest.is_dir():
        return (
            f"{path}: cannot write the output: {nearest} is a file, not a "
            "folder; choose another --output"
        )
    if not path.parent.is_dir():
        return (
            f"{path}: cannot write the output: the folder {path.parent} does not "
            "exist; create it or choose another --output"
        )
    if isinstance(err, PermissionError):
        return (
            f"{path}: cannot write the output: {err.strerror or err}; choose an "
            "--output in a folder you can write to"
        )
    if isinstance(err, FileNotFoundError):
        # The folder exists, so it rejected the new file, as /proc does.
        return (
            f"{path}: cannot write the output: the folder {path.parent} does "
            f"not allow new files ({err.strerror or err}); choose an --output "
            "in a folder of a regular file system"
        )
    return (
        f"{path}: cannot write the output: {err.strerror or err}"
        f"{write_failure_advice(err)}"
    )


def _write_atomically(path: Path, write: Callable[[TextIO], T]) -> T:
    """Run write(stream) on a temporary file beside path, then rename it to path."""
    temporary = path.with_name(_temporary_name(path.name))
    earlier_mode = file_mode(path)
    try:
        # Mode "x" creates the file with the usual umask permissions. A file
        # that it replaces keeps its own, set before any result is written, so
        # that private results stay private.
        with open(
            temporary, "x", encoding="utf-8", errors=OUTPUT_ERRORS, newline=""
        ) as stream:
            if earlier_mode is not None:
                os.chmod(stream.fileno(), earlier_mode)
            result = write(stream)
        os.replace(temporary, path)
    except OSError as err:
        _remove_temporary(temporary)
        raise DataError(output_error_message(path, err)) from err
    except BaseException:
        _remove_temporary(temporary)
        raise
    return result


# The maximum length of a file name in bytes (NAME_MAX) on common Linux file
# systems such as ext4, XFS and Btrfs.
_MAX_NAME_BYTES = 255


def _temporary_name(name: str) -> str:
    """Return a hidden, unique name for the temporary file of output ``name``.

    The output's name is cut so that the temporary name fits in
    ``_MAX_NAME_BYTES`` even when the output's own name is close to it.
    """
    suffix = f".{uuid.uuid4().hex[:12]}.tmp"
    encoding = sys.getfilesystemencoding()
    room = _MAX_NAME_BYTES - len("." + suffix)
    encoded = os.fsencode(name)
    if len(encoded) > room:
        # A character cut in two is dropped.
        name = encoded[:room].decode(encoding, "ignore")
    return f".{name}{suffix}"


def _remove_temporary(path: Path) -> None:
    # A temporary file that could not be created, such as one below a regular
    # file, fails to unlink with errors other than FileNotFoundError.
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def _run(
    model: SentimentModel,
    reader: _Reader,
    stream: TextIO,
    output_format: str,
    chunk_rows: int,
    batch_size: int,
    bar: Any,
) -> _Counts:
    """Score all chunks of reader into stream, advancing ``bar`` (or None)."""
    counts = _Counts()
    writer = None
    # The next chunk is queued for scoring before this one is written, so
    # the model's threads keep working while the main thread writes.
    pending: deque[tuple[_Chunk, PendingScores]] = deque()

    def write_oldest() -> None:
        chunk, scoring = pending.popleft()
        scores = _format_scores(scoring.result().tolist(), chunk)
        for index, place in chunk.replaced:
            # A review without tokens has no score, and its row an error.
            if scores.positive[index]:
                reader.replaced_bytes.note(place)
        writer.write(chunk, scores)
        counts.rows += len(chunk.records)
        counts.unscored += scores.unscored
        if bar is not None:
            bar.update(len(chunk.records))

    try:
        with _scoring_runtime():
            try:
                chunk = None
                for chunk, token_ids in _encoded_chunks(reader, model, chunk_rows):
                    interrupts.check()
                    if writer is None:
                        writer = _make_writer(output_format, stream, reader)
                    pending.append(
                        (chunk, model.submit_token_ids(token_ids, batch_size))
                    )
                    if len(pending) > _SCORING_CHUNKS:
                        write_oldest()
            except DataError as err:
                # The rows before the bad row are written, so that a stream
                # gets every row it can; a file is not kept anyway.
                while pending:
                    write_oldest()
                rest = reader.rows_before_failure()
                # The failure may also come after a chunk was read, before
                # the next one was begun.
                if rest is not None and rest is not chunk:
                    if writer is None:
                        writer = _make_writer(output_format, stream, reader)
                    token_ids = model.encoder.encode_packed(rest.texts_to_score())
                    pending.append(
                        (rest, model.submit_token_ids(token_ids, batch_size))
                    )
                    write_oldest()
                err.rows_written = counts.rows  # type: ignore[attr-defined]
                raise
            except KeyboardInterrupt as err:
                err.rows_written = counts.rows  # type: ignore[attr-defined]
                raise
            while pending:
                write_oldest()
        if writer is None:
            # No rows: a CSV or TSV output still gets its header.
            _make_writer(output_format, stream, reader)
        if bar is not None:
            # The total was the most rows the lines could hold; records
            # over several lines and blank lines at the end make fewer.
            bar.total = bar.n
            bar.refresh()
    finally:
        if bar is not None:
            bar.close()
    return counts


# While a file is scored, a thread that holds the GIL hands it over after
# this many seconds instead of Python's default 5 ms. The model's threads need
# the GIL for a moment after each forward pass and otherwise wait for the
# main thread to let go of it.
SWITCH_INTERVAL_SECONDS = 1e-4
_runtime_lock = threading.Lock()
_runtime_users = 0
_saved_switch_interval = 0.0
_saved_gc_enabled = True


@contextlib.contextmanager
def _scoring_runtime() -> Iterator[None]:
    """Lower the GIL switch interval and pause the garbage collector during runs.

    Sets ``sys.getswitchinterval()`` to at most ``SWITCH_INTERVAL_SECONDS``
    and disables the cyclic garbage collector. The collector would otherwise walk
    every live object again and again as the rows of each chunk are
    allocated. The rows, token lists and scores hold no reference cycles, so
    reference counting frees them. Both settings are restored when the last
    run ends.
    """
    global _runtime_users, _saved_switch_interval, _saved_gc_enabled
    with _runtime_lock:
        if _runtime_users == 0:
            _saved_switch_interval = sys.getswitchinterval()
            _saved_gc_enabled = gc.isenabled()
            sys.setswitchinterval(min(_saved_switch_interval, SWITCH_INTERVAL_SECONDS))
            gc.disable()
        _runtime_users += 1
    try:
        yield
    finally:
        with _runtime_lock:
            _runtime_users -= 1
            if _runtime_users == 0:
                sys.setswitchinterval(_saved_switch_interval)
                if _saved_gc_enabled:
                    gc.enable()


def score_chunks(
    model: SentimentModel,
    chunks: Iterable[tuple[T, Sequence[str]]],
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Iterator[tuple[T, list[float]]]:
    """Yield each chunk's payload with P(positive) of its reviews, in order.

    The next chunk is read, tokenized and queued for scoring before a chunk
    is yielded, so the model's threads work while the caller writes it, as
    in :func:`score_file`. A review without tokens gets NaN. The process-wide
    settings of a run (see ``_scoring_runtime``) hold until the generator
    ends, so a caller that may stop early closes it, as with
    ``contextlib.closing``.

    Args:
        model: The loaded model.
        chunks: Pairs of anything the caller needs back and the reviews to
            score, such as a chunk's rows and their texts.
        batch_size: Reviews per forward pass.
    """
    pending: deque[tuple[T, PendingScores]] = deque()
    with _scoring_runtime():
        for payload, texts in chunks:
            interrupts.check()
            token_ids = model.encoder.encode_packed(texts)
            pending.append((payload, model.submit_token_ids(token_ids, batch_size)))
            if len(pending) > _SCORING_CHUNKS:
                payload, scoring = pending.popleft()
                yield payload, scoring.result().tolist()
        while pending:
            payload, scoring = pending.popleft()
            yield payload, scoring.result().tolist()


def score_in_chunks(
    texts: Sequence[str],
    chunk_size: int,
    score: Callable[[Sequence[str]], T],
    bar: Any = None,
) -> list[T]:
    """Return ``score`` of each chunk of ``chunk_size`` texts, advancing ``bar``.

    The bar, from :func:`progress_bar` or None, is closed at the end.
    """
    results = []
    try:
        for start in range(0, len(texts), chunk_size):
            chunk = texts[start : start + chunk_size]
            results.append(score(chunk))
            if bar is not None:
                bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
    return results


def progress_bar(progress: bool | None, total: int | None = None) -> Any:
    """Return a tqdm bar of scored rows on stderr, or None when hidden.

    Args:
        progress: Show the bar; None shows it only when stderr is a terminal.
        total: Rows to score, if known.
    """
    if progress is None:
        progress = stderr_is_terminal()
    if not progress or sys.stderr is None:
        # sys.stderr is None where descriptor 2 was closed (2>&-).
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit=" rows", desc="scoring", file=sys.stderr)


def _encoded_chunks(
    reader: _Reader, model: SentimentModel, chunk_rows: int
) -> Iterator[tuple[_Chunk, PackedTokenIds]]:
    """Yield each chunk with the token ids of its texts."""
    chunks = reader.chunks(chunk_rows)
    while True:
        try:
            chunk = next(chunks)
        except StopIteration:
            return
        except (OSError, UnicodeDecodeError) as err:
            # UnicodeDecodeError only if the file changed after the encoding scan.
            raise DataError(f"{reader.source}: cannot read the file: {err}") from err
        yield chunk, model.encoder.encode_packed(chunk.texts_to_score())


def _log_summary(
    source: str, summary: ScoringSummary, output_format: str, error_field: str
) -> None:
    rate = summary.rows / summary.seconds if summary.seconds > 0 else 0.0
    logger.info(
        "scored %d of %d rows of %s in %.1f s (%.0f rows/s)",
        summary.scored,
        summary.rows,
        source,
        summary.seconds,
        rate,
    )
    where = {
        "text": "in the output",
        "jsonl": f"under the {error_field} key",
    }.get(output_format, f"in the {error_field} column")
    if summary.unscored == 1:
        logger.warning("1 row of %s was not scored; the reason is %s", source, where)
    elif summary.unscored:
        logger.warning(
            "%d rows of %s were not scored; the reasons are %s",
            summary.unscored,
            source,
            where,
        )
