"""Reader for CSV and TSV files with a header row."""

import csv
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sentiment_lstm.data.collector import EMPTY_FIX, SKIP_HINT, ExampleCollector
from sentiment_lstm.data.columns import Columns, choose_columns
from sentiment_lstm.data.decoding import decode_file
from sentiment_lstm.data.fields import MISSING, add_record
from sentiment_lstm.data.records import DataError, ReadOptions


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
    decoded = decode_file(path)
    source = str(path)
    dialect = csv.excel_tab if delimiter == "\t" else csv.excel
    # newline="" keeps the line breaks inside quoted fields for the csv module.
    reader = csv.reader(io.StringIO(decoded.text, newline=""), dialect)

    header, columns = read_header(reader, options, source)
    text_index = header.index(columns.text)
    label_index = None if columns.label is None else header.index(columns.label)

    def reject(line: int, reason: str, fix: str) -> None:
        collector.reject(source, line, reason, fix)

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
        )


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
        raise DataError(f"{source} line 1: invalid header row: {err}") from err
    return header, choose_columns(header, options, source, "the header has columns")


def parsed_rows(
    reader: Any,
    width: int,
    delimiter: str,
    source: str,
    reject: Callable[[int, str, str], None],
) -> Iterator[tuple[int, list[str]]]:
    """Yield (line, row) for each record of a ``csv.reader`` after the header.

    The line is the physical line where the record starts. A record that does
    not parse or has another number of fields than ``width`` goes to
    ``reject(line, reason, fix)`` instead, which raises or counts it.

    Raises:
        DataError: If the csv module fails before reaching a new record.
    """
    separator = "tabs" if delimiter == "\t" else "commas"
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            if reader.line_num < start:
                raise DataError(f"{source} line {start}: {err}") from err
            reject(
                start,
                f"invalid record: {err}",
                "check for an unclosed quote at or before this line, "
                f"or use {SKIP_HINT}",
            )
            continue
        if not row:
            reject(start, "empty line", EMPTY_FIX)
            continue
        if len(row) != width:
            reject(
                start,
                f"expected {width} fields as in the header, found {len(row)}",
                f"put fields that contain {separator}, quotes or line breaks in "
                f'double quotes and double the quotes inside ("" for "), '
                f"or use {SKIP_HINT}",
            )
            continue
        yield start, row
