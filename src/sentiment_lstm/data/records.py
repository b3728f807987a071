"""Labelled examples, read options and read results shared by every reader."""

import math
from dataclasses import dataclass, field
from pathlib import Path

from sentiment_lstm.files import broken_link_reason

LABEL_NAMES = ("negative", "positive")

# Formats that ReadOptions.format accepts. "lines" (one review per line, no labels)
# is only valid for prediction input.
FORMATS = ("posneg", "csv", "tsv", "jsonl", "folder", "lines")


class DataError(ValueError):
    """Invalid data file or read options.

    The message names the file, the line where there is one, the value found and
    how to fix it.
    """


@dataclass(frozen=True, slots=True)
class Example:
    """One review with its label and where it was read from.

    Attributes:
        text: Review text, with surrounding whitespace removed and nothing else
            changed.
        label: 0 (negative) or 1 (positive). None only for input read with
            ``require_labels=False`` whose label is missing or unusable.
        source: Path of the file the review came from.
        line: 1-based line where the record starts in that file, 1 for a file that
            contains a single review.
    """

    text: str
    label: int | None
    source: str
    line: int


# Highest rating of the 5-star scale that the default star cut-offs are for.
FIVE_STAR_MAX = 5


@dataclass(frozen=True)
class StarRule:
    """Cut-offs that turn star ratings into labels.

    Ratings at or below ``negative_max`` are negative and ratings at or above
    ``positive_min`` are positive. Rows rated in between are left out of labelled
    data and counted.
    """

    negative_max: float = 2
    positive_min: float = 4

    def __post_init__(self) -> None:
        for name in ("negative_max", "positive_min"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise DataError(
                    f"invalid star rule: {name} must be a number, got {value!r}"
                )
            if not math.isfinite(value):
                raise DataError(
                    f"invalid star rule: {name} must be finite, got {value!r}"
                )
        if self.negative_max >= self.positive_min:
            raise DataError(
                f"invalid star rule: negative_max ({self.negative_max:g}) must be "
                f"below positive_min ({self.positive_min:g}); set "
                "--negative-max-stars below --positive-min-stars"
            )


@dataclass(frozen=True)
class ReadOptions:
    """How to read a data file.

    Attributes:
        format: One of "posneg", "csv", "tsv", "jsonl", "folder" or "lines". None
            detects it from the file extension or the folder layout.
        text_column: Text column of a CSV, TSV or JSONL file. None detects it
            among text, review, content, sentence, comment and body.
        label_column: Label column of a CSV, TSV or JSONL file. None detects it
            among label, sentiment, polarity, score, rating and stars.
        stars: Whether the label column contains star ratings, mapped to labels by
            ``star_rule``.
        star_rule: Cut-offs for star ratings.
        skip_bad_rows: Whether to collect bad rows and leave them out. If False, the
            first bad row raises DataError.
        require_labels: Whether every example needs a label. False reads
            prediction input: the label column becomes optional, and a label that
            is missing, invalid or between the star cut-offs gives label None
            instead of a bad row or a left-out row. Pos/neg files and folders
            still give labels.
        keep_unscored: Whether to keep prediction input that cannot be scored,
            an empty review or one with an invalid byte, in
            ``ReadResult.unscored`` instead of treating it as a bad row.
            ``read_texts`` honours it; ``read_examples`` ignores it unless
            ``require_labels`` is False.
    """

    format: str | None = None
    text_column: str | None = None
    label_column: str | None = None
    stars: bool = False
    star_rule: StarRule = StarRule()
    skip_bad_rows: bool = False
    require_labels: bool = True
    keep_unscored: bool = False

    def __post_init__(self) -> None:
        if self.format is not None and self.format not in FORMATS:
            raise DataError(
                f"invalid data format {self.format!r}; allowed: {', '.join(FORMATS)}; "
                "leave the format unset to detect it from the file extension"
            )
        for name in ("text_column", "label_column"):
            value = getattr(self, name)
            if value is not None and not value.strip():
                raise DataError(f"invalid {name} {value!r}: the column name is empty")
        if not isinstance(self.star_rule, StarRule):
            raise DataError(
                f"invalid star_rule {self.star_rule!r}: expected a StarRule"
            )


@dataclass(frozen=True)
class BadRow:
    """A record left out of a read, with the reason.

    Attributes:
        source: Path of the file the record came from.
        line: 1-based line where the record starts in that file.
        reason: What is wrong with the record.
        lines: Physical lines that the record spans, more than one for a CSV
            or TSV record with a line break in a quoted field. A record that
            fails to parse after its first line spans that line alone, because
            the lines after it are read again as records of their own.
    """

    source: str
    line: int
    reason: str
    lines: int = 1


@dataclass(frozen=True)
class UnscoredRow:
    """A review of prediction input that is kept but cannot be scored.

    Attributes:
        source: Path of the file the review came from.
        line: 1-based line where the review starts in that file.
        text: The review without surrounding whitespace, as examples are
            stored: empty, or with escaped bytes (U+DC80 to U+DCFF) in place
            of invalid ones.
        reason: Why it cannot be scored.
        position: Number of examples read before it, so that
            ``examples[position]`` is the first example after it.
    """

    source: str
    line: int
    text: str
    reason: str
    position: int


@dataclass
class ReadResult:
    """Examples read from a path and what was left out.

    Attributes:
        examples: Examples in reading order, which is the same for every read
            of the same files.
        bad_rows: Rows left out as invalid. Filled only with ``skip_bad_rows``.
            ``bad_lines`` gives the physical lines they span.
        left_out_by_stars: Number of rows whose rating fell between the star
            cut-offs.
        files: Every file read, sorted, for fingerprinting.
        unscored: Reviews kept without a score, in reading order. Filled only
            with ``keep_unscored``.
        columns: The text and label columns of a CSV, TSV or JSONL file as
            chosen and spelled there, under "text" and "label" (None for an
            unused label column); None for other formats.
    """

    examples: list[Example]
    bad_rows: list[BadRow] = field(default_factory=list)
    left_out_by_stars: int = 0
    files: list[Path] = field(default_factory=list)
    unscored: list[UnscoredRow] = field(default_factory=list)
    columns: dict[str, str | None] | None = None

    @property
    def bad_lines(self) -> int:
        """Physical lines spanned by the bad rows left out.

        It exceeds ``len(bad_rows)`` when a bad CSV or TSV record spans
        several lines, such as one whose quote closes lines later.
        """
        return sum(row.lines for row in self.bad_rows)


def broken_link_error(path: Path) -> DataError:
    """Return the error for a data path that is a link leading to no file."""
    return DataError(
        f"{path} is a link that leads to no file: {broken_link_reason(path)}; "
        "point the link at the data, or pass the data's own path"
    )
