"""Choice of the text and label columns of CSV, TSV and JSONL files."""

import logging
from dataclasses import dataclass

from sentiment_lstm.data.records import DataError, ReadOptions

logger = logging.getLogger(__name__)

# Column names tried in this order when the user names no column; case is ignored.
TEXT_COLUMN_NAMES = ("text", "review", "content", "sentence", "comment", "body")
LABEL_COLUMN_NAMES = ("label", "sentiment", "polarity", "score", "rating", "stars")


@dataclass(frozen=True)
class Columns:
    """Names of the text and label columns as spelled in the file.

    Attributes:
        text: Text column.
        label: Label column, None for unlabelled prediction input.
    """

    text: str
    label: str | None


def _match_named(requested: str, names: list[str]) -> str | None:
    if requested in names:
        return requested
    normalised = requested.strip().lower()
    matches = [name for name in names if name.strip().lower() == normalised]
    return matches[0] if len(matches) == 1 else None


def _detect(candidates: tuple[str, ...], names: list[str]) -> str | None:
    normalised = {}
    for name in names:
        normalised.setdefault(name.strip().lower(), name)
    for candidate in candidates:
        if candidate in normalised:
            return normalised[candidate]
    return None


def _missing_column(
    role: str, requested: str | None, names: list[str], source: str, where: str
) -> DataError:
    listed = ", ".join(repr(name) for name in names) or "none"
    if requested is None:
        candidates = TEXT_COLUMN_NAMES if role == "text" else LABEL_COLUMN_NAMES
        problem = f"no {role} column found (looked for {', '.join(candidates)})"
    else:
        problem = f"{role} column {requested!r} not found"
    return DataError(
        f"{source}: {problem}; {where}: {listed}; "
        f"pass --{role}-column with one of them"
    )


def choose_columns(
    names: list[str], options: ReadOptions, source: str, where: str
) -> Columns:
    """Choose the text and label columns among the names of a header or record.

    Args:
        names: Column names of the CSV/TSV header, or keys of the first JSONL
            record.
        options: Read options with the columns the user named, if any.
        source: File, for messages.
        where: What ``names`` are, for messages, such as "the header has columns".

    Returns:
        The chosen columns.

    Raises:
        DataError: If a named column is missing, no text column is found, no label
            column is found while labels are required, or both are the same column.
    """
    if options.text_column is not None:
        text = _match_named(options.text_column, names)
    else:
        text = _detect(TEXT_COLUMN_NAMES, names)
    if text is None:
        raise _missing_column("text", options.text_column, names, source, where)

    if options.label_column is not None:
        label = _match_named(options.label_column, names)
        if label is None:
            raise _missing_column("label", options.label_column, names, source, where)
    else:
        label = _detect(LABEL_COLUMN_NAMES, names)
        if label is None and options.require_labels:
            raise _missing_column("label", None, names, source, where)

    if label == text:
        raise DataError(
            f"{source}: column {text!r} was chosen as both text and label column; "
            "pass --text-column and --label-column with two different columns"
        )
    if label is None:
        logger.info("%s has no label column, so its reviews have no labels", source)
    logger.info("%s: text column %r, label column %r", source, text, label)
    return Columns(text=text, label=label)
