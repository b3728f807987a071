"""Choice of the text and label columns of CSV, TSV and JSONL files."""

import logging
from dataclasses import dataclass

from sentiment_lstm.data.records import DataError, ReadOptions

logger = logging.getLogger(__name__)

# Column names tried in this order when the user names no column; case is ignored.
TEXT_COLUMN_NAMES = ("text", "review", "content", "sentence", "comment", "body")
LABEL_COLUMN_NAMES = ("label", "sentiment", "polarity", "score", "rating", "stars")
# The label column names that star ratings come under, looked for first
# with --stars, so that a sentiment column of words beside them is not chosen.
RATING_COLUMN_NAMES = ("score", "rating", "stars")
# Columns that 'sentiment-lstm predict' adds to each row it scores, as
# sentiment_lstm.scoring.SCORE_FIELDS names them. Its JSONL records have an
# "error" key only where a row is not scored.
PREDICTION_COLUMN_NAMES = ("positive", "negative", "label")


@dataclass(frozen=True)
class Columns:
    """Names of the text and label columns as spelled in the file.

    Attributes:
        text: Text column.
        label: Label column, None for unlabelled prediction input.
    """

    text: str
    label: str | None


def _positions(indices: list[int]) -> str:
    """Name 0-based column indices as 1-based positions, e.g. "1 and 3"."""
    numbers = [str(index + 1) for index in indices]
    if len(numbers) == 1:
        return numbers[0]
    return ", ".join(numbers[:-1]) + " and " + numbers[-1]


def _find(
    role: str, wanted: str, names: list[str], source: str, *, named: bool
) -> str | None:
    """Find the column named wanted, preferring an exact match.

    Without an exact match, a name that matches when case and surrounding
    spaces are ignored is used.

    Args:
        role: "text" or "label", for messages.
        wanted: The name looked for.
        names: Column names in file order.
        source: File, for messages.
        named: Whether the user passed wanted with --text-column or
            --label-column, for the fix in messages.

    Returns:
        The name as spelled in names, or None if no name matches.

    Raises:
        DataError: If wanted occurs more than once, or two or more names match
            it when case is ignored, so the column is ambiguous.
    """
    flag = f"--{role}-column"
    exact = [index for index, name in enumerate(names) if name == wanted]
    if len(exact) > 1:
        fix = "rename all but one of them"
        if not named:
            fix += f", or pass {flag} with a column whose name is unique"
        raise DataError(
            f"{source}: the {role} column {wanted!r} is ambiguous: the header has "
            f"it {len(exact)} times, at positions {_positions(exact)}; {fix}"
        )
    if exact:
        return wanted

    normalised = wanted.strip().lower()
    loose = [
        index for index, name in enumerate(names) if name.strip().lower() == normalised
    ]
    if len(loose) > 1:
        listed = " and ".join(
            f"{names[index]!r} at position {index + 1}" for index in loose
        )
        raise DataError(
            f"{source}: the {role} column {wanted!r} is ambiguous: {len(loose)} "
            f"columns match it when case is ignored, {listed}; pass {flag} with "
            "the exact name of one of them, or rename the others"
        )
    return names[loose[0]] if loose else None


def record_key(record: dict[str, object], name: str) -> str:
    """Return the key of a JSONL record that the chosen column ``name`` means.

    The column is chosen from the first record that has it, so a later
    record may spell it in other case, as in ``"Text"`` then ``"text"``. Such
    a key is used when it is the record's only one that matches ``name``
    with case and surrounding spaces ignored; otherwise ``name`` is returned.
    """
    if name in record:
        return name
    loose = keys_matching(record, name)
    return loose[0] if len(loose) == 1 else name


def keys_matching(record: dict[str, object], name: str) -> list[str]:
    """Return the keys of a record that match ``name`` with case and spaces ignored."""
    normalised = name.strip().lower()
    return [key for key in record if key.strip().lower() == normalised]


class MissingColumnError(DataError):
    """A header or record without the text or label column that is needed.

    Attributes:
        role: "text" or "label".
        detected: Whether the column was looked for by its common names,
            because the user named none.
    """

    def __init__(self, message: str, role: str, detected: bool) -> None:
        super().__init__(message)
        self.role = role
        self.detected = detected


def _missing_column(
    role: str, requested: str | None, names: list[str], source: str, where: str
) -> DataError:
    listed = ", ".join(repr(name) for name in names) or "none"
    if requested is None:
        candidates = TEXT_COLUMN_NAMES if role == "text" else LABEL_COLUMN_NAMES
        problem = f"no {role} column found (looked for {', '.join(candidates)})"
    else:
        problem = f"{role} column {requested!r} not found"
    return MissingColumnError(
        f"{source}: {problem}; {where}: {listed}; "
        f"pass --{role}-column with one of them",
        role,
        detected=requested is None,
    )


def _choose(
    role: str,
    requested: str | None,
    candidates: tuple[str, ...],
    names: list[str],
    source: str,
) -> str | None:
    """Find the column the user requested, else the first candidate present."""
    if requested is not None:
        return _find(role, requested, names, source, named=True)
    for candidate in candidates:
        found = _find(role, candidate, names, source, named=False)
        if found is not None:
            return found
    return None


def _label_candidates(options: ReadOptions) -> tuple[str, ...]:
    """Return the label column names to look for, in order."""
    if not options.stars:
        return LABEL_COLUMN_NAMES
    others = tuple(
        name for name in LABEL_COLUMN_NAMES if name not in RATING_COLUMN_NAMES
    )
    return RATING_COLUMN_NAMES + others


def choose_columns(
    names: list[str], options: ReadOptions, source: str, where: str
) -> Columns:
    """Choose the text and label columns among the names of a header or record.

    A name matches exactly, or else when case and surrounding spaces are
    ignored, so with the header ``Text,text`` the text column is ``text``.

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
            column is found while labels are required, both are the same column,
            or the chosen name occurs more than once or matches more than one
            column when case is ignored.
    """
    text = _choose("text", options.text_column, TEXT_COLUMN_NAMES, names, source)
    if text is None:
        raise _missing_column("text", options.text_column, names, source, where)

    optional_label = not options.require_labels and options.label_column is None
    try:
        label = _choose(
            "label", options.label_column, _label_candidates(options), names, source
        )
    except DataError:
        if not optional_label:
            raise
        # Prediction input needs no labels, so an unclear label column is
        # left out instead of stopping the run.
        logger.info(
            "%s: more than one column could be the label column, so none is used",
            source,
        )
        label = None
    if optional_label and label is not None and label == text:
        label = None
    if label is None and options.label_column is None and options.require_labels:
        if all(name == text for name in names):
            raise MissingColumnError(
                f"{source}: no label column found, because {where} {text!r} "
                "alone, the text column; add a column of labels, or score "
                "unlabelled reviews with 'sentiment-lstm predict'",
                "label",
                detected=True,
            )
    if label is None and (options.label_column is not None or options.require_labels):
        raise _missing_column("label", options.label_column, names, source, where)

    if (
        options.require_labels
        and options.label_column is None
        and label == "label"
        and set(PREDICTION_COLUMN_NAMES).issubset(names)
    ):
        raise DataError(
            f"{source}: the label column 'label' seems to hold the predicted "
            "labels that 'sentiment-lstm predict' writes, because positive and "
            "negative columns come with it, and a model's guesses are no true "
            "labels to train on or to measure against (its own score 100%); "
            "pass --label-column with the column of true labels, or "
            "--label-column label to use it anyway"
        )
    if label == text:
        raise DataError(
            f"{source}: column {text!r} was chosen as both text and label column; "
            "pass --text-column and --label-column with two different columns"
        )
    if label is None or optional_label:
        # Scoring reads no labels unless --label-column names them.
        logger.info("%s: text column %r", source, text)
    else:
        logger.info("%s: text column %r, label column %r", source, text, label)
    return Columns(text=text, label=label)
