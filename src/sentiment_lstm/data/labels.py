"""Parsing of label cells and star ratings into label indices."""

import contextlib
import math
import re
from dataclasses import dataclass

from sentiment_lstm.data.collector import SKIP_HINT
from sentiment_lstm.data.records import StarRule

# Spreadsheets write booleans as TRUE and FALSE, as in a column such as
# "recommended" or "is_positive".
_LABEL_WORDS = {
    "negative": 0,
    "neg": 0,
    "false": 0,
    "positive": 1,
    "pos": 1,
    "true": 1,
}

ALLOWED_LABELS = (
    "positive, negative, pos, neg, true, false (in any case), 0, 1, and in JSONL "
    "the booleans true and false"
)

# Maximum length of a value as shown in an error message; longer values are cut.
_MAX_SHOWN_CHARS = 60


class LabelError(ValueError):
    """A label or rating that cannot be parsed.

    Attributes:
        reason: What is wrong, with the value.
        fix: What the user can do about it.
    """

    def __init__(self, reason: str, fix: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fix = fix


@dataclass(frozen=True)
class Rating:
    """A star rating and the label it maps to, None if it falls between the cut-offs."""

    value: float
    label: int | None


def show_value(value: object) -> str:
    """Format a cell value for an error message, quoted and shortened."""
    if isinstance(value, str):
        formatted = repr(value)
    elif isinstance(value, bool):
        formatted = "true" if value else "false"
    else:
        formatted = repr(value)
    if len(formatted) > _MAX_SHOWN_CHARS:
        formatted = formatted[: _MAX_SHOWN_CHARS - 3] + "..."
    return formatted


def parse_label(value: object) -> int:
    """Parse a label cell into 0 (negative) or 1 (positive).

    Accepted: the words positive, negative, pos, neg, true and false in any
    case, the numbers 0 and 1 as text ("1", "1.0") or as JSON numbers, and
    JSON booleans.

    Args:
        value: A CSV cell (str) or a JSON value.

    Returns:
        The label index.

    Raises:
        LabelError: If the value is not an accepted label.
    """
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)) and value in (0, 1):
        return int(value)
    number = math.nan
    if isinstance(value, (int, float)):
        # A JSON integer of hundreds of digits is beyond a float.
        with contextlib.suppress(OverflowError):
            number = float(value)
    elif isinstance(value, str):
        word = value.strip().lower()
        if word in _LABEL_WORDS:
            return _LABEL_WORDS[word]
        number = _ascii_number(word)
        if number in (0.0, 1.0):
            return int(number)
    raise LabelError(
        f"unknown label {show_value(value)}",
        f"allowed: {ALLOWED_LABELS}; {_OTHER_SCHEMES.get(number, _STARS_HINT)}, "
        f"or {SKIP_HINT}",
    )


_STARS_HINT = "use --stars for ratings"

# Fixes for two common numberings of negative and positive: the label that
# is not 0 or 1 maps to the fix. The second is that of the Amazon polarity
# set. With 1 and 2, the 1s before the first 2 were read as positive.
_OTHER_SCHEMES = {
    -1.0: "for labels -1 and 1 use --stars --negative-max-stars -1 "
    "--positive-min-stars 1",
    2.0: "for labels 1 (negative) and 2 (positive) use --stars "
    "--negative-max-stars 1 --positive-min-stars 2, and for star ratings "
    "--stars",
}


def looks_like_rating(value: object, column: str) -> bool:
    """Return whether a label cell of ``column`` looks like a star rating.

    It does when the column is named like ratings (score, rating, stars) and
    the cell is a number above 1 and at most 10. No label is such a number,
    and the column's 1s and 0s would then read as labels. A label
    column of another name with a 2 may hold a third class instead.
    """
    name = column.strip().lower()
    if not any(word in name for word in ("score", "rating", "star")):
        return False
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        number = _ascii_number(value.strip())
    else:
        return False
    return 1 < number <= 10


# A number in ASCII decimal notation, as spreadsheets write them. Python's
# float() also reads "1_0" as 10 and digits of other scripts, such as the
# full-width "１", which a label or rating cell should not hold.
_ASCII_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)


def _ascii_number(text: str) -> float:
    """Return the number that ``text`` (stripped) spells, else NaN."""
    if not _ASCII_NUMBER.fullmatch(text):
        return math.nan
    return float(text)


def parse_rating(value: object, rule: StarRule) -> Rating:
    """Parse a star rating and map it to a label with the cut-offs of rule.

    Args:
        value: A CSV cell (str) or a JSON number.
        rule: Cut-offs for negative and positive ratings.

    Returns:
        The rating and its label, which is None between the cut-offs.

    Raises:
        LabelError: If the value is not a finite number.
    """
    number = math.nan
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:
            # a JSON integer beyond the float range
            number = math.inf
    elif isinstance(value, str):
        number = _ascii_number(value.strip())
    if not math.isfinite(number):
        raise LabelError(
            f"invalid rating {show_value(value)}",
            "expected a number of stars; fix the row, pass --label-column with "
            f"the column of ratings, or use {SKIP_HINT}",
        )
    if number <= rule.negative_max:
        return Rating(number, 0)
    if number >= rule.positive_min:
        return Rating(number, 1)
    return Rating(number, None)
