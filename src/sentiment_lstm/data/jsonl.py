"""Reader for JSON Lines files: one JSON object per line."""

import json
import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from sentiment_lstm.data.collector import (
    EMPTY_FIX,
    ENCODING_FIX,
    SKIP_HINT,
    ExampleCollector,
)
from sentiment_lstm.data.columns import (
    Columns,
    MissingColumnError,
    choose_columns,
    keys_matching,
    record_key,
)
from sentiment_lstm.data.decoding import (
    DecodedText,
    Encoding,
    invalid_byte_reason,
    log_carriage_return_line_ends,
    open_text,
    scan_file,
)
from sentiment_lstm.data.fields import MISSING, add_record, json_type_name
from sentiment_lstm.data.records import ReadOptions

logger = logging.getLogger(__name__)

# Records that may lack the text or label field before the first one that
# has both. If this many lack them, the file is taken to lack the field.
COLUMN_SEARCH_RECORDS = 100


def invalid_json_row(err: ValueError | RecursionError, line: str) -> tuple[str, str]:
    """Return the reason and fix for a JSON Lines line that does not parse.

    Besides syntax errors, Python's json module raises ValueError for an
    integer of more digits than ``sys.get_int_max_str_digits()`` and
    RecursionError for arrays or objects nested too deeply. Raw carriage
    returns are whitespace in JSON, so where a file that also has "\n" line
    ends has lines that end in a carriage return alone, one line contains
    several records.
    """
    fix = f"fix the line, or use {SKIP_HINT}"
    if isinstance(err, RecursionError):
        return "invalid JSON: arrays or objects nested too deeply to parse", fix
    if not isinstance(err, json.JSONDecodeError):
        # Python's message ends in advice to call sys.set_int_max_str_digits(),
        # which a user of the command line cannot follow.
        return f"invalid JSON: {str(err).split(';')[0]}", fix
    # Some of Python's messages end in "at", such as "Invalid control
    # character at" and "Unterminated string starting at".
    message = err.msg.removesuffix(" at")
    reason = f"invalid JSON: {message} at column {err.colno}"
    if line.lstrip(" \t").startswith("\ufeff"):
        # The byte order mark of a file joined after another, as by cat.
        # json.loads and JSONDecoder.decode word this failure differently.
        reason = (
            "invalid JSON: the line starts with a byte order mark (U+FEFF), as "
            "when files are joined"
        )
        fix = f"remove the byte order mark, or use {SKIP_HINT}"
    elif "\r" in line:
        fix = (
            "the line contains carriage returns (CR) without line feeds, as "
            "in files with old Mac line ends; convert the line ends to LF or "
            f"CRLF, or use {SKIP_HINT}"
        )
    return reason, fix


class _Record(dict):
    """A JSON object, with the count of each key that occurs more than once.

    ``json.loads`` keeps the last value of a repeated key without a word, so
    a record such as ``{"label": 1, "label": 0}`` would get label 0.
    """

    repeated_keys: dict[str, int] = {}


def repeated_field_row(field: str, repeated_keys: dict[str, int]) -> tuple[str, str]:
    """Return the reason and fix for a record that repeats ``field``."""
    return (
        f"the field {field!r} occurs {repeated_keys[field]} times in the record",
        f"keep one of them, or use {SKIP_HINT}",
    )


def record_from_pairs(pairs: list[tuple[str, object]]) -> _Record:
    """Build a JSON object for ``json.loads``'s ``object_pairs_hook``."""
    record = _Record(pairs)
    if len(record) < len(pairs):
        counts = Counter(key for key, _ in pairs)
        record.repeated_keys = {key: n for key, n in counts.items() if n > 1}
    return record


def read_jsonl(path: Path, options: ReadOptions, collector: ExampleCollector) -> None:
    """Read a JSON Lines file into collector.

    The text and label fields are chosen from the keys of the first record
    that has them. A line that is empty, invalid JSON or not an object is a bad
    row, and so is a record that lacks the text field or a needed label, before
    or after that record. Blank lines after the last record are ignored.

    Args:
        path: File to read.
        options: Fields to use, star ratings and whether labels are required.
        collector: Receiver of examples and bad rows.

    Raises:
        DataError: If a named or required field is missing from every record,
            or from the first ``COLUMN_SEARCH_RECORDS`` records, or on the first
            bad row unless bad rows are skipped.
    """
    collector.add_file(path)
    source = str(path)
    # The file is scanned for its encoding first and then read line by line,
    # so that only the examples stay in memory, not its whole text.
    scan = scan_file(path, source)
    encoding = scan.result()
    # invalid_byte_reason reads only the encoding and errors of a DecodedText.
    decoded = DecodedText("", encoding.name, encoding.errors)
    columns: Columns | None = None
    # Records read before one has the text and label fields, and the error of
    # the first of them.
    waiting: list[tuple[int, _Record]] = []
    first_error: MissingColumnError | None = None

    def add(record: _Record, chosen: Columns, line: int) -> None:
        text_key = record_key(record, chosen.text)
        label_key = None if chosen.label is None else record_key(record, chosen.label)
        for role, key in (("text", text_key), ("label", label_key)):
            similar = [] if key is None or key in record else keys_matching(record, key)
            if similar:
                listed = ", ".join(repr(name) for name in similar)
                collector.reject(
                    source,
                    line,
                    f"missing {role} field {key!r}: the keys {listed} match it "
                    "when case is ignored, so none is used",
                    f"rename all but one of them, or use {SKIP_HINT}",
                )
                return
        for field in (text_key, label_key):
            if field in record.repeated_keys:
                collector.reject(
                    source, line, *repeated_field_row(field, record.repeated_keys)
                )
                return
        add_record(
            record.get(text_key, MISSING),
            MISSING if label_key is None else record.get(label_key, MISSING),
            columns=chosen,
            options=options,
            decoded=decoded,
            collector=collector,
            source=source,
            line=line,
            check_bytes=False,
        )

    # Blank lines wait here until a later record shows that they are not at
    # the end of the file, where they are formatting rather than bad rows.
    blank_lines: list[int] = []
    carriage_returns_only = scan.has_carriage_return and not scan.has_line_feed
    lines = _lines(path, encoding, carriage_returns_only, source)
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            blank_lines.append(number)
            continue
        for blank_line in blank_lines:
            collector.reject(source, blank_line, "empty line", EMPTY_FIX)
        blank_lines.clear()
        reason = invalid_byte_reason(line, decoded)
        if reason is not None:
            collector.reject(source, number, reason, ENCODING_FIX)
            continue
        try:
            record = json.loads(line, object_pairs_hook=record_from_pairs)
        except (ValueError, RecursionError) as err:
            collector.reject(source, number, *invalid_json_row(err, line))
            continue
        if not isinstance(record, dict):
            collector.reject(
                source,
                number,
                f"expected a JSON object, found a JSON {json_type_name(record)}",
                f'write one object per line such as {{"text": "...", "label": 1}}, '
                f"or use {SKIP_HINT}",
            )
            continue

        if columns is None:
            waiting.append((number, record))
            try:
                columns = choose_columns(
                    list(record),
                    options,
                    source,
                    f"the record on line {number} has fields",
                )
            except MissingColumnError as err:
                # The record may only lack its own text or label, which is a
                # bad row, so a later record may still name the columns.
                first_error = first_error or err
                if len(waiting) >= COLUMN_SEARCH_RECORDS:
                    raise first_error from None
                continue
            collector.columns = {"text": columns.text, "label": columns.label}
            for waiting_number, waiting_record in waiting:
                add(waiting_record, columns, waiting_number)
            waiting.clear()
            continue
        add(record, columns, number)
    if blank_lines:
        logger.debug(
            "ignored %d blank lines at the end of %s", len(blank_lines), source
        )
    if columns is None and first_error is not None:
        raise first_error


def _lines(
    path: Path, encoding: Encoding, carriage_returns_only: bool, source: str
) -> Iterator[str]:
    """Yield the lines of a JSON Lines file without their line ends.

    Lines end at "\\n", with the "\\r" of CRLF removed. A file without any
    "\\n" but with "\\r" has old Mac OS line ends and is split at "\\r".
    Elsewhere a "\\r" is whitespace between JSON tokens, because a JSON
    string cannot contain one unescaped.
    """
    if carriage_returns_only:
        log_carriage_return_line_ends(source)
    newline = "\r" if carriage_returns_only else "\n"
    with open_text(path, encoding, newline, source) as stream:
        for line in stream:
            line = line.removesuffix(newline)
            yield line.removesuffix("\r") if newline == "\n" else line
