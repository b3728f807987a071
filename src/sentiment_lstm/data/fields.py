"""Conversion of the text and label fields of one record into an example."""

from sentiment_lstm.data.collector import (
    EMPTY_FIX,
    EMPTY_REVIEW_REASON,
    ENCODING_FIX,
    SKIP_HINT,
    TOO_LONG_FIX,
    ExampleCollector,
)
from sentiment_lstm.data.columns import Columns
from sentiment_lstm.data.decoding import DecodedText, invalid_byte_reason
from sentiment_lstm.data.labels import (
    ALLOWED_LABELS,
    LabelError,
    looks_like_rating,
    parse_label,
    parse_rating,
)
from sentiment_lstm.data.records import DataError, ReadOptions
from sentiment_lstm.text import MAX_REVIEW_CHARS, TOO_LONG_REASON

# Value of a field that a JSONL record lacks.
MISSING = object()


def json_type_name(value: object) -> str:
    """Return the JSON name of the type of a decoded JSON value, such as "array"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _is_empty(value: object) -> bool:
    return value is MISSING or value is None or value == ""


def add_record(
    text: object,
    label: object,
    *,
    columns: Columns,
    options: ReadOptions,
    decoded: DecodedText,
    collector: ExampleCollector,
    source: str,
    line: int,
    lines: int = 1,
    check_bytes: bool = True,
) -> None:
    """Add one CSV/TSV/JSONL record to collector as an example or a bad row.

    Args:
        text: Value of the text field: a str, a JSON value or MISSING.
        label: Value of the label field: a str, a JSON value or MISSING. Ignored
            if ``columns.label`` is None.
        columns: Chosen text and label columns, for messages.
        options: Read options (star ratings, whether labels are required).
        decoded: Decoded file, to recognise invalid bytes.
        collector: Receiver of the example or bad row.
        source: File of the record.
        line: 1-based line where the record starts.
        lines: Physical lines that the record spans, for the bad-row summary.
        check_bytes: Reject fields that contain a NUL or an escaped invalid
            byte. A JSONL reader checks the line before parsing it and passes
            False, because a NUL or a lone surrogate that a JSON escape such
            as ``\\u0000`` gives is text, not a byte of the file.

    Raises:
        DataError: If the record is bad and bad rows are not skipped.
    """
    if isinstance(text, str):
        reason = invalid_byte_reason(text, decoded) if check_bytes else None
        if reason is not None:
            collector.reject_unscorable(
                source, line, text.strip(), reason, ENCODING_FIX, lines=lines
            )
            return
        if len(text) > MAX_REVIEW_CHARS:
            # CSV and TSV fields stop at this length already, JSON strings do not.
            collector.reject_unscorable(
                source, line, "", TOO_LONG_REASON, TOO_LONG_FIX, lines=lines
            )
            return
    if isinstance(label, str) and check_bytes:
        reason = invalid_byte_reason(label, decoded)
        if reason is not None:
            collector.reject(source, line, reason, ENCODING_FIX, lines=lines)
            return

    if text is MISSING or text is None:
        collector.reject(
            source,
            line,
            (
                f"missing text field {columns.text!r}"
                if text is MISSING
                else f"text field {columns.text!r} is null"
            ),
            EMPTY_FIX,
            lines=lines,
        )
        return
    if not isinstance(text, str):
        collector.reject(
            source,
            line,
            f"text field {columns.text!r} is a JSON {json_type_name(text)}, "
            "not a string",
            f"store the review as a JSON string, or use {SKIP_HINT}",
            lines=lines,
        )
        return
    stripped = text.strip()
    if not stripped:
        collector.reject_unscorable(
            source, line, "", EMPTY_REVIEW_REASON, EMPTY_FIX, lines=lines
        )
        return

    if columns.label is None:
        collector.add(stripped, None, source, line)
        return
    if not options.require_labels:
        parsed = _optional_label(label, options, collector, source, line)
        collector.add(stripped, parsed, source, line)
        return

    if _is_empty(label):
        expected = "a star rating" if options.stars else f"a label ({ALLOWED_LABELS})"
        collector.reject(
            source,
            line,
            f"missing label in field {columns.label!r}",
            f"add {expected}, or use {SKIP_HINT}",
            lines=lines,
        )
        return
    try:
        if options.stars:
            rating = parse_rating(label, options.star_rule)
            collector.ratings.add(rating.value)
            parsed = rating.label
        else:
            parsed = parse_label(label)
    except LabelError as err:
        if not options.stars and looks_like_rating(label, columns.label):
            # Skipping such rows would keep the ratings of 1 (and 0) as
            # positive (and negative) labels.
            raise DataError(
                f"{source} line {line}: {err.reason} in column {columns.label!r}, "
                "which looks like a column of star ratings, so its 1s would be "
                "read as positive labels; pass --stars to read it as ratings, "
                "or --label-column with a column of labels"
            ) from err
        collector.reject(source, line, err.reason, err.fix, lines=lines)
        return
    if parsed is None:
        collector.leave_out_by_stars()
        return
    collector.add(stripped, parsed, source, line)


def _optional_label(
    label: object,
    options: ReadOptions,
    collector: ExampleCollector,
    source: str,
    line: int,
) -> int | None:
    """Parse the label of prediction input, which keeps its row whatever the label.

    A missing label gives None. An invalid label or a rating between the star
    cut-offs also gives None, and the collector counts it for the log summary.
    """
    if _is_empty(label):
        return None
    try:
        if not options.stars:
            return parse_label(label)
        rating = parse_rating(label, options.star_rule)
    except LabelError as err:
        collector.ignore_label(source, line, err.reason)
        return None
    collector.ratings.add(rating.value)
    if rating.label is None:
        collector.ignore_label(
            source, line, f"rating {rating.value:g} is between the star cut-offs"
        )
    return rating.label
