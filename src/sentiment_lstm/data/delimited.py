"""Reader for CSV and TSV files with a header row."""

import csv
import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from sentiment_lstm.data.collector import (
    EMPTY_FIX,
    SKIP_HINT,
    ExampleCollector,
)
from sentiment_lstm.data.columns import Columns, MissingColumnError, choose_columns
from sentiment_lstm.data.decoding import DecodedText, open_text, scan_file
from sentiment_lstm.data.fields import MISSING, add_record
from sentiment_lstm.data.labels import LabelError, parse_label
from sentiment_lstm.data.records import DataError, ReadOptions
from sentiment_lstm.text import MAX_REVIEW_CHARS

logger = logging.getLogger(__name__)


def read_delimited(
    path: Path, delimiter: str, options: ReadOptions, collector: ExampleCollector
) -> None:
    """Read a CSV (delimiter ",") or TSV (delimiter "\\t") file into collector.

    Both use the quoting rules of the csv module's excel dialects: a field in
    double quotes may contain the delimiter, line breaks and doubled quotes. The
    line of a record is the physical line where it starts, so a record after a
    quoted line break keeps its line number in the file.

    Args:
        path: File to read.
        delimiter: "," or "\\t".
        options: Columns to use, star ratings and whether labels are required.
        collector: Receiver of examples and bad rows.

    Raises:
        DataError: If the file is empty, a named or required column is missing, or
            on the first bad row unless bad rows are skipped.
    """
    collector.add_file(path)
    source = str(path)
    # The file is scanned for its encoding first and then parsed as a
    # stream, so that only the examples stay in memory, not its whole text.
    scan = scan_file(path, source)
    encoding = scan.result()
    # invalid_byte_reason reads only the encoding and errors of a DecodedText.
    decoded = DecodedText("", encoding.name, encoding.errors)
    newline = csv_newline(scan.has_line_feed)
    with open_text(path, encoding, newline, source) as stream:
        reader = strict_reader(stream, delimiter)
        header, columns = read_header(reader, options, source)
        collector.columns = {"text": columns.text, "label": columns.label}
        text_index = header.index(columns.text)
        label_index = None if columns.label is None else header.index(columns.label)

        def reject(
            line: int, reason: str, fix: str, *, lines: int = 1, fields: object = None
        ) -> None:
            collector.reject(source, line, reason, fix, lines=lines)

        for line, row in parsed_rows(reader, len(header), delimiter, source, reject):
            add_record(
                row[text_index],
                MISSING if label_index is None else row[label_index],
                columns=columns,
                options=options,
                decoded=decoded,
                collector=collector,
                source=source,
                line=line,
                lines=reader.line_num - line + 1,
            )


CARRIAGE_RETURN_REASON = (
    'a carriage return ("\\r") inside a field that is not in double quotes'
)
CARRIAGE_RETURN_FIX = (
    'put the field in double quotes or remove the "\\r"; if the lines of the '
    'file end in "\\r" alone (old Mac OS line ends), convert them to "\\n"'
)


def _csv_error_text(err: csv.Error) -> str:
    """Return the csv module's message with a tab shown as a backslash and t.

    The message quotes the delimiter, so a raw tab in it would be invisible.
    """
    return str(err).replace("\t", "\\t")


def _is_carriage_return_error(err: csv.Error) -> bool:
    # The csv module's message for a "\r" that is not followed by "\n" in a
    # line that continues (Python 3.11).
    return "new-line character seen in unquoted field" in str(err)


def csv_newline(has_line_feed: bool) -> str:
    """Return the ``newline`` to open a CSV or TSV file with.

    Lines split on "\\n" only, so that a "\\r" inside a field that is not in
    quotes makes its record fail as a whole instead of splitting it in two.
    A file without "\\n", such as one with old Mac OS line ends, splits on
    "\\r" too. Line breaks inside quoted fields are kept either way.

    Args:
        has_line_feed: Whether the file contains a "\\n".
    """
    return "\n" if has_line_feed else ""


# The maximum field length the csv module accepts, in characters. Its default
# of 131,072 is shorter than some reviews; a limit still stops an unclosed
# quote from reading a whole large file into one field.
FIELD_SIZE_LIMIT = MAX_REVIEW_CHARS


def strict_reader(lines: Iterable[str], delimiter: str) -> Any:
    """Return a ``csv.reader`` of the excel dialect that rejects stray quotes.

    In strict mode a quoted field must end at a delimiter or a line end, and
    the file must not end inside quotes. The lenient default would join the
    rows up to the next quote into one field without a word. The process-wide
    field size limit is raised to ``FIELD_SIZE_LIMIT`` if it is lower.

    Args:
        lines: Lines with their line breaks, such as a file opened with
            ``newline=csv_newline(...)``.
        delimiter: "," or "\\t".
    """
    if csv.field_size_limit() < FIELD_SIZE_LIMIT:
        csv.field_size_limit(FIELD_SIZE_LIMIT)
    dialect = csv.excel_tab if delimiter == "\t" else csv.excel
    return csv.reader(lines, dialect, strict=True)


def read_header(
    reader: Any, options: ReadOptions, source: str
) -> tuple[list[str], Columns]:
    """Read the header row of a ``csv.reader`` and choose the columns.

    Raises:
        DataError: If the file is empty or the header lacks a needed column.
    """
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(
            f"{source}: the file is empty; expected a header row with column names"
        ) from None
    except csv.Error as err:
        if _is_carriage_return_error(err):
            raise DataError(
                f"{source} line 1: invalid header row: {CARRIAGE_RETURN_REASON}; "
                f"{CARRIAGE_RETURN_FIX}"
            ) from err
        raise DataError(
            f"{source} line 1: invalid header row: {_csv_error_text(err)}"
        ) from err
    if not any(name.strip() for name in header):
        raise DataError(
            f"{source} line 1: the header row is empty; the first line must name "
            "the columns, so remove the empty lines above it"
        )
    try:
        columns = choose_columns(header, options, source, "the header has columns")
    except DataError as err:
        if header[0].lstrip().startswith("{") and header[-1].rstrip().endswith("}"):
            raise DataError(
                f"{source} line 1: the header row looks like a JSON object, so the "
                "file seems to be JSON Lines; pass --data-format jsonl, or rename "
                "it to .jsonl"
            ) from err
        separator_fix = _other_separator_fix(header, reader.dialect.delimiter)
        if separator_fix is not None:
            raise DataError(
                f"{source}: the header is one column, {header[0]!r}, {separator_fix}"
            ) from err
        value = _label_like_value(header)
        if isinstance(err, MissingColumnError) and value is not None:
            raise DataError(
                f"{err}. But the header has the value {value!r}, so the file seems "
                "to have no header row: add a first line that names the columns, "
                "such as text,label"
            ) from err
        if isinstance(err, MissingColumnError) and err.role == "text" and err.detected:
            # A file of reviews saved without a header row starts with a review.
            raise DataError(
                f"{err}; or, if line 1 is a review rather than column names, add "
                "a header line such as 'text' above it"
            ) from err
        raise
    return header, columns


def _label_like_value(header: list[str]) -> str | None:
    """Return the first header field that reads as a label or a number, if any.

    Column names are rarely such values, so one of them means that the first
    line is most likely a review with its label. The exception is the
    positive and negative score columns that 'sentiment-lstm predict' adds,
    which a review row would not hold both of.
    """
    names = {name.strip().lower() for name in header}
    if {"positive", "negative"} <= names:
        return None
    for field_value in header:
        try:
            parse_label(field_value)
        except LabelError:
            pass
        else:
            return field_value
        try:
            float(field_value)
        except ValueError:
            continue
        return field_value
    return None


# Separators that a one-column header may reveal, with the fix for each: the
# separator's name and the format that reads such a file, if any.
_OTHER_SEPARATORS = {
    ",": ("commas", "csv"),
    "\t": ("tabs", "tsv"),
    ";": ("semicolons", None),
    "|": ("vertical bars", None),
}


def _other_separator_fix(header: list[str], delimiter: str) -> str | None:
    """Explain a one-column header that contains another separator, or None.

    A file separated by semicolons, such as a CSV export of a spreadsheet set
    to a European locale, or a TSV file named .csv, has one column per row
    when read with the wrong separator.
    """
    if len(header) != 1:
        return None
    for separator, (name, data_format) in _OTHER_SEPARATORS.items():
        if separator == delimiter or separator not in header[0]:
            continue
        expected = "tabs" if delimiter == "\t" else "commas"
        if data_format is None:
            fix = f"save it with {expected} between the fields"
        else:
            fix = f"pass --data-format {data_format}"
        return f"so the fields seem to be separated by {name}, not {expected}; {fix}"
    return None


def parsed_rows(
    reader: Any,
    width: int,
    delimiter: str,
    source: str,
    reject: Callable[..., None],
    *,
    keep_empty: bool = False,
) -> Iterator[tuple[int, list[str]]]:
    """Yield (line, row) for each record of a ``csv.reader`` after the header.

    The line is the physical line where the record starts. A record that does
    not parse or has another number of fields than ``width`` goes to
    ``reject(line, reason, fix, lines=lines)`` instead, which raises or counts
    it; ``lines`` is the number of physical lines the record spans. A record
    with another number of fields also passes them, as ``fields=row``. A line of
    spaces in a file of two or more columns counts as empty. With
    ``keep_empty`` an empty line is yielded as an empty row. Otherwise an empty
    line between records goes to ``reject``, and empty lines after the last
    record are ignored, because they hold no record.

    Raises:
        DataError: If the csv module fails before reaching a new record.
    """
    separator = "tabs" if delimiter == "\t" else "commas"
    # Empty lines wait here until a later record shows that they are not at the
    # end of the file.
    empty_lines: list[int] = []

    def reject_empty_lines() -> None:
        for empty_line in empty_lines:
            reject(empty_line, "empty line", EMPTY_FIX)
        empty_lines.clear()

    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            if empty_lines:
                logger.debug(
                    "ignored %d empty lines at the end of %s", len(empty_lines), source
                )
            return
        except csv.Error as err:
            reject_empty_lines()
            if reader.line_num < start:
                raise DataError(f"{source} line {start}: {err}") from err
            # The record may have run on over several lines before failing.
            span = (
                f" (the record runs to line {reader.line_num})"
                if reader.line_num > start
                else ""
            )
            if "field larger than field limit" in str(err):
                reason = (
                    f"a field is longer than {FIELD_SIZE_LIMIT:,} characters, the "
                    f"most any field, the review's included, may have{span}"
                )
                fix = (
                    "this is most often a quote that is never closed, which runs "
                    "the lines after it into one field; close the quote, shorten "
                    f"the review, or use {SKIP_HINT}"
                )
            elif _is_carriage_return_error(err):
                reason = f"{CARRIAGE_RETURN_REASON}{span}"
                fix = f"{CARRIAGE_RETURN_FIX}, or use {SKIP_HINT}"
            else:
                reason = f"invalid record: {_csv_error_text(err)}{span}"
                fix = (
                    "check for an unclosed quote or text after a closing quote; "
                    "a field with quotes in it must be in double quotes with the "
                    f'quotes inside doubled ("" for "), or use {SKIP_HINT}'
                )
                if delimiter == "\t":
                    fix = f"TSV files are read with CSV quoting, so {fix}"
            reject(start, reason, fix, lines=reader.line_num - start + 1)
            continue
        if keep_empty and (
            not row or _is_blank_line(row, width, reader.line_num - start)
        ):
            yield start, []
            continue
        if not row or (
            not keep_empty and _is_blank_line(row, width, reader.line_num - start)
        ):
            empty_lines.append(start)
            continue
        reject_empty_lines()
        if len(row) != width:
            reject(
                start,
                f"expected {width} field{'' if width == 1 else 's'} as in the "
                f"header, found {len(row)}",
                f"put fields that contain {separator}, quotes or line breaks in "
                f'double quotes and double the quotes inside ("" for "), '
                f"or use {SKIP_HINT}",
                lines=reader.line_num - start + 1,
                fields=row,
            )
            continue
        yield start, row


def _is_blank_line(row: list[str], width: int, extra_lines: int) -> bool:
    """Return whether a record is one line of spaces in a multi-column file."""
    return width > 1 and extra_lines == 0 and len(row) == 1 and not row[0].strip()
