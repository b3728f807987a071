"""Reader for CSV and TSV files with a header row."""

import csv
import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

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
    quoted line break keeps its line number in the file. A record that fails to
    parse after running past its first line is a bad row of that line alone,
    and the lines after it are read again as records of their own.

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
            line: int,
            reason: str,
            fix: str,
            *,
            lines: int = 1,
            fields: object = None,
            line_text: object = None,
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
                lines=reader.last_line - line + 1,
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


class RecordReader:
    """A strict ``csv.reader`` of the excel dialect over physical lines it numbers.

    In strict mode a quoted field must end at a delimiter or a line end, and
    the file must not end inside quotes. The lenient default would join the
    rows up to the next quote into one field without a word. The line numbers
    count the lines of the stream, which stay the physical lines of the file
    when a record is read again with :meth:`reread_after_first_line`.

    The lines that the csv module reads for a record are kept until the next
    record starts, so their memory stays within one record, whose fields the
    csv module caps at its field size limit.

    Attributes:
        dialect: The dialect of the ``csv.reader``, with its delimiter.
    """

    def __init__(self, lines: Iterable[str], delimiter: str) -> None:
        self._source = iter(lines)
        # Lines to read again before the stream's, last one first.
        self._pushed_back: list[str] = []
        # The lines read for the current record.
        self._record: list[str] = []
        # Physical lines before the first that the csv reader counts.
        self._base = 0
        self._first_line = 1
        dialect = csv.excel_tab if delimiter == "\t" else csv.excel
        self._reader = csv.reader(self._lines(), dialect, strict=True)
        self.dialect = self._reader.dialect

    def _lines(self) -> Iterator[str]:
        # A generator, because a __next__ method called for every line took
        # about 0.5 us more a line.
        record = self._record
        pushed_back = self._pushed_back
        while pushed_back:
            line = pushed_back.pop()
            record.append(line)
            yield line
        for line in self._source:
            record.append(line)
            yield line

    def __iter__(self) -> "RecordReader":
        return self

    def __next__(self) -> list[str]:
        self._record.clear()
        self._first_line = self._base + self._reader.line_num + 1
        return next(self._reader)

    @property
    def first_line(self) -> int:
        """The physical line where the last record read, or failed, starts."""
        return self._first_line

    @property
    def last_line(self) -> int:
        """The last physical line that the csv module read for that record.

        It is ``first_line - 1`` when the record read no line at all.
        """
        return self._base + self._reader.line_num

    def line_text(self) -> str:
        """Return the text of the last record's first line, without its line break."""
        return self._record[0].removesuffix("\n").removesuffix("\r")

    def reread_after_first_line(self) -> str:
        """Read the lines of a failed record after its first line again.

        The next record then starts on the line after the first line.

        Returns:
            The text of the first line, without its line break.
        """
        first, *rest = self._record
        self._pushed_back.extend(reversed(rest))
        self._record[:] = [first]
        # A new csv reader, because the lines it has read are read again
        # and the old one may have reached the end of the stream.
        self._base = self._first_line
        self._reader = csv.reader(self._lines(), self.dialect, strict=True)
        return self.line_text()


def strict_reader(lines: Iterable[str], delimiter: str) -> RecordReader:
    """Return a :class:`RecordReader` that rejects stray quotes.

    The process-wide field size limit of the csv module is raised to
    ``FIELD_SIZE_LIMIT`` if it is lower.

    Args:
        lines: Lines with their line breaks, such as a file opened with
            ``newline=csv_newline(...)``.
        delimiter: "," or "\\t".
    """
    if csv.field_size_limit() < FIELD_SIZE_LIMIT:
        csv.field_size_limit(FIELD_SIZE_LIMIT)
    return RecordReader(lines, delimiter)


def read_header(
    reader: RecordReader, options: ReadOptions, source: str
) -> tuple[list[str], Columns]:
    """Read the header row of a :class:`RecordReader` and choose the columns.

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
    reader: RecordReader,
    width: int,
    delimiter: str,
    source: str,
    reject: Callable[..., None],
    *,
    keep_empty: bool = False,
) -> Iterator[tuple[int, list[str]]]:
    """Yield (line, row) for each record of a :class:`RecordReader` after the header.

    The line is the physical line where the record starts. A record that does
    not parse or has another number of fields than ``width`` goes to
    ``reject(line, reason, fix, lines=lines)`` instead, which raises or counts
    it; ``lines`` is the number of physical lines the record spans. A record
    with another number of fields also passes them, as ``fields=row``, and
    one that does not parse passes ``line_text``, the text of its first line.

    A record that fails to parse after running past its first line, because a
    quote opened there is not closed on it, is a bad row of its first line
    alone, passed with ``lines=1``. The lines after it are read again as
    records of their own, so that the good records among them are kept and
    the bad ones get their own line numbers.

    A line of spaces in a file of two or more columns counts as empty. An
    empty line between records is yielded as an empty row with
    ``keep_empty``, and goes to ``reject`` otherwise. Empty lines after the
    last record are ignored, because they hold no record.

    Raises:
        DataError: If the csv module fails before reaching a new record.
    """
    separator = "tabs" if delimiter == "\t" else "commas"
    # Empty lines wait here until a later record shows that they are not at the
    # end of the file.
    empty_lines: list[int] = []

    def release_empty_lines() -> Iterator[tuple[int, list[str]]]:
        """Yield the waiting empty lines as empty rows, or reject them."""
        for empty_line in empty_lines:
            if keep_empty:
                yield empty_line, []
            else:
                reject(empty_line, "empty line", EMPTY_FIX)
        empty_lines.clear()

    while True:
        try:
            row = next(reader)
        except StopIteration:
            count = len(empty_lines)
            if count:
                logger.info(
                    "left out %d blank line%s at the end of %s",
                    count,
                    "" if count == 1 else "s",
                    source,
                )
            return
        except csv.Error as err:
            yield from release_empty_lines()
            start, end = reader.first_line, reader.last_line
            if end < start:
                raise DataError(f"{source} line {start}: {err}") from err
            if end > start:
                # NOTE: the lines after the first are parsed again, so a file
                # in which many records each fail many lines below their start
                # takes time quadratic in its lines, up to the field size limit
                # of characters per record.
                line_text = reader.reread_after_first_line()
                reason, fix = _open_quote_failure(err, end, delimiter)
                reject(start, reason, fix, line_text=line_text)
                continue
            reason, fix = _one_line_failure(err, delimiter)
            reject(start, reason, fix, line_text=reader.line_text())
            continue
        start, end = reader.first_line, reader.last_line
        if not row or _is_blank_line(row, width, end - start):
            empty_lines.append(start)
            continue
        yield from release_empty_lines()
        if len(row) != width:
            reject(
                start,
                f"expected {width} field{'' if width == 1 else 's'} as in the "
                f"header, found {len(row)}",
                f"put fields that contain {separator}, quotes or line breaks in "
                f'double quotes and double the quotes inside ("" for "), '
                f"or use {SKIP_HINT}",
                lines=end - start + 1,
                fields=row,
            )
            continue
        yield start, row


def _one_line_failure(err: csv.Error, delimiter: str) -> tuple[str, str]:
    """Return the reason and fix for a record that fails on its one line."""
    if "field larger than field limit" in str(err):
        reason = (
            f"a field is longer than {FIELD_SIZE_LIMIT:,} characters, the "
            "most any field, the review's included, may have"
        )
        fix = f"shorten the field or close a quote left open in it, or use {SKIP_HINT}"
        return reason, fix
    if _is_carriage_return_error(err):
        return CARRIAGE_RETURN_REASON, f"{CARRIAGE_RETURN_FIX}, or use {SKIP_HINT}"
    fix = (
        "check for an unclosed quote or text after a closing quote; "
        "a field with quotes in it must be in double quotes with the "
        f'quotes inside doubled ("" for "), or use {SKIP_HINT}'
    )
    if delimiter == "\t":
        fix = f"TSV files are read with CSV quoting, so {fix}"
    return f"invalid record: {_csv_error_text(err)}", fix


def _open_quote_failure(
    err: csv.Error, last_line: int, delimiter: str
) -> tuple[str, str]:
    """Return the reason and fix for a record that fails after its first line.

    Such a record runs past its first line only because a quote opened there
    is not closed on it. The csv module stopped reading it on ``last_line``.
    """
    # The csv module's messages for a file that ends inside quotes and for a
    # field over its limit (Python 3.11).
    message = str(err)
    if "unexpected end of data" in message:
        reason = (
            "a quote opened on this line never closes, so the record runs on "
            f"to the end of the file at line {last_line}"
        )
    elif "field larger than field limit" in message:
        reason = (
            "a quote opened on this line is still open at line "
            f"{last_line}, after {FIELD_SIZE_LIMIT:,} characters, the most a "
            "field may have"
        )
    else:
        detail = (
            CARRIAGE_RETURN_REASON
            if _is_carriage_return_error(err)
            else _csv_error_text(err)
        )
        reason = (
            f"a quote opened on this line runs on to line {last_line}, where "
            f"the record does not parse: {detail}"
        )
    fix = (
        "close the quote or, if it is part of the text, put the field in double "
        f'quotes and double the quotes inside ("" for "), or use {SKIP_HINT}'
    )
    if delimiter == "\t":
        fix = f"TSV files are read with CSV quoting, so {fix}"
    return reason, fix


def _is_blank_line(row: list[str], width: int, extra_lines: int) -> bool:
    """Return whether a record is one line of spaces in a multi-column file."""
    return width > 1 and extra_lines == 0 and len(row) == 1 and not row[0].strip()
