"""Collection of examples and bad rows during one read, with its log summary."""

import logging
import math
from collections import Counter
from pathlib import Path

from sentiment_lstm.data.records import (
    FIVE_STAR_MAX,
    LABEL_NAMES,
    BadRow,
    DataError,
    Example,
    ReadResult,
    StarRule,
    UnscoredRow,
)

logger = logging.getLogger(__name__)

# Ending of every bad-row fix, after "or" or "or use".
SKIP_HINT = "--skip-bad-rows to leave such rows out"

# Fixes for reasons that every reader can find.
ENCODING_FIX = f"remove the byte or save the file as UTF-8, or use {SKIP_HINT}"
EMPTY_FIX = f"remove the row, or use {SKIP_HINT}"

# Reason of a review with no text but whitespace.
EMPTY_REVIEW_REASON = "empty review"

TOO_LONG_FIX = f"shorten the review, or use {SKIP_HINT}"

# Number of bad rows quoted in the warning when rows are skipped.
_LOGGED_BAD_ROWS = 5


class ExampleCollector:
    """Examples, bad rows and star-rating counts gathered while reading one path.

    A bad row raises DataError at once unless ``skip_bad_rows`` is set, in which
    case it is stored and reported by ``result``.
    """

    def __init__(self, skip_bad_rows: bool, keep_unscored: bool = False) -> None:
        self.skip_bad_rows = skip_bad_rows
        self.keep_unscored = keep_unscored
        self.examples: list[Example] = []
        self.bad_rows: list[BadRow] = []
        self.unscored: list[UnscoredRow] = []
        self.left_out_by_stars = 0
        self.files: set[Path] = set()
        self.ignored_label_count = 0
        self.ignored_label_rows: list[str] = []
        self.ratings = RatingRange()
        # The chosen columns of a CSV, TSV or JSONL file, as ReadResult has them.
        self.columns: dict[str, str | None] | None = None

    def add_file(self, path: Path) -> None:
        """Record a file as read, for the fingerprint."""
        self.files.add(path)

    def add(self, text: str, label: int | None, source: str, line: int) -> None:
        """Store one example."""
        self.examples.append(Example(text=text, label=label, source=source, line=line))

    def reject(
        self, source: str, line: int, reason: str, fix: str, *, lines: int = 1
    ) -> None:
        """Store a bad row, or raise for it unless bad rows are skipped.

        Args:
            source: File of the row.
            line: 1-based line where the row starts.
            reason: What is wrong with the row, with the value found.
            fix: What the user can do, ending with the --skip-bad-rows hint.
            lines: Physical lines that the row spans.

        Raises:
            DataError: If bad rows are not skipped.
        """
        if not self.skip_bad_rows:
            raise DataError(f"{source} line {line}: {reason}; {fix}")
        self.bad_rows.append(
            BadRow(source=source, line=line, reason=reason, lines=lines)
        )

    def reject_unscorable(
        self,
        source: str,
        line: int,
        text: str,
        reason: str,
        fix: str,
        *,
        lines: int = 1,
    ) -> None:
        """Keep a review that cannot be scored, or treat it as a bad row.

        With ``keep_unscored`` the review is stored in its place among the
        examples; otherwise it goes to :meth:`reject`.

        Args:
            source: File of the review.
            line: 1-based line where the review starts.
            text: The review as read.
            reason: Why it cannot be scored.
            fix: What the user can do, for :meth:`reject`.
            lines: Physical lines that the review spans, for :meth:`reject`.
        """
        if not self.keep_unscored:
            self.reject(source, line, reason, fix, lines=lines)
            return
        self.unscored.append(
            UnscoredRow(source, line, text, reason, position=len(self.examples))
        )

    def ignore_label(self, source: str, line: int, reason: str) -> None:
        """Count a row of prediction input whose label is unusable and kept as None."""
        self.ignored_label_count += 1
        if len(self.ignored_label_rows) < _LOGGED_BAD_ROWS:
            self.ignored_label_rows.append(f"{source} line {line}: {reason}")

    def leave_out_by_stars(self) -> None:
        """Count a row whose rating fell between the star cut-offs."""
        self.left_out_by_stars += 1

    def result(self, path: Path, star_rule: StarRule) -> ReadResult:
        """Log a summary of the read and return its result.

        Args:
            path: Path the user gave, for messages.
            star_rule: Cut-offs used for star ratings, for the log line.

        Returns:
            The examples, bad rows, star count and sorted files.

        Raises:
            DataError: If no example was read.
        """
        if self.bad_rows:
            _log_bad_rows(self.bad_rows, path)
        self.ratings.log(path, star_rule)
        if self.ignored_label_count:
            logger.warning(
                "read %d rows of %s without their labels, which are unusable; "
                "the first %d: %s",
                self.ignored_label_count,
                path,
                len(self.ignored_label_rows),
                "; ".join(self.ignored_label_rows),
            )
        if self.left_out_by_stars:
            logger.info(
                "left out %s of %s with a rating above %g and below %g stars",
                _count(self.left_out_by_stars, "row"),
                path,
                star_rule.negative_max,
                star_rule.positive_min,
            )
        if not self.examples and not self.unscored:
            bad = len(self.bad_rows)
            first = ""
            if self.bad_rows:
                row = self.bad_rows[0]
                # When every row of a table is bad, the columns chosen are
                # often wrong. Only CSV, TSV and JSONL reads choose columns.
                check = "check the path and the format"
                if self.columns is not None:
                    check = (
                        "check the path, the format and the columns "
                        "(--text-column, --label-column, --stars)"
                    )
                first = (
                    f"; the first bad row, {row.source} line {row.line}: "
                    f"{row.reason}; {check}"
                )
            if not first and self.left_out_by_stars:
                first = (
                    "; check the star cut-offs (--negative-max-stars, "
                    "--positive-min-stars)"
                )
            raise DataError(
                f"{path}: no reviews found ({bad} bad row{'' if bad == 1 else 's'}, "
                f"{self.left_out_by_stars} left out by the star cut-offs)"
                + (first or "; check the path and the format")
            )

        counts = Counter(example.label for example in self.examples)
        by_label = ", ".join(
            f"{counts[index]} {name}" for index, name in enumerate(LABEL_NAMES)
        )
        if counts[None]:
            by_label += f", {counts[None]} without label"
        unscorable = (
            f", and {len(self.unscored)} more that cannot be scored"
            if self.unscored
            else ""
        )
        logger.info(
            "read %d review%s from %s (%s)%s",
            len(self.examples),
            "" if len(self.examples) == 1 else "s",
            path,
            by_label,
            unscorable,
        )
        _log_conflicting_labels(self.examples, path, stars=self.ratings.count > 0)
        return ReadResult(
            examples=self.examples,
            bad_rows=self.bad_rows,
            left_out_by_stars=self.left_out_by_stars,
            files=sorted(self.files),
            unscored=self.unscored,
            columns=self.columns,
        )


def _log_conflicting_labels(examples: list[Example], path: Path, stars: bool) -> None:
    """Warn about review texts that occur with both labels.

    Texts count as the same when they differ only in case and spacing, which
    the text encoder drops. No model can classify every copy of such a text
    correctly: at least the copies with the rarer label of each text are
    wrong, whatever it learns. The warning gives that floor, and the text with
    the most copies as an example, with the place of its first positive and
    first negative copy.
    """
    # labels.py imports this module for SKIP_HINT.
    from sentiment_lstm.data.labels import show_value

    def key(text: str) -> str:
        return " ".join(text.lower().split())

    # Labels seen per text as bits, 1 negative and 2 positive: small ints, so
    # that a file of a million reviews adds only the dict and its keys.
    seen: dict[str, int] = {}
    for example in examples:
        if example.label is not None:
            text = key(example.text)
            seen[text] = seen.get(text, 0) | (1 << example.label)
    labelled = sum(1 for example in examples if example.label is not None)
    both = {text for text, bits in seen.items() if bits == 3}
    del seen
    if not both:
        return
    # text -> [negative count, positive count]
    conflicting: dict[str, list[int]] = {text: [0, 0] for text in both}
    for example in examples:
        if example.label is not None:
            counts = conflicting.get(key(example.text))
            if counts is not None:
                counts[example.label] += 1
    copies = sum(map(sum, conflicting.values()))
    floor = sum(map(min, conflicting.values()))
    frequent = max(conflicting, key=lambda text: sum(conflicting[text]))
    negative, positive = conflicting[frequent]
    first: dict[int, Example] = {}
    for example in examples:
        if (
            example.label is not None
            and example.label not in first
            and key(example.text) == frequent
        ):
            first[example.label] = example
            if len(first) == 2:
                break
    # A pos/neg pair or a folder has its own file per label.
    one_file = first[0].source == first[1].source == str(path)
    places = {
        label: f"{'' if one_file else example.source + ' '}line {example.line}"
        for label, example in first.items()
    }
    logger.warning(
        "%s %s with both labels in %s, in %d of its %d labelled reviews, such "
        "as %s (%d positive, the first at %s; %d negative, the first at %s); "
        "a model gets at least %d of these %d wrong whatever it learns; check "
        "the labels%s",
        _count(len(conflicting), "text"),
        "occurs" if len(conflicting) == 1 else "occur",
        path,
        copies,
        labelled,
        show_value(first[1].text),
        positive,
        places[1],
        negative,
        places[0],
        floor,
        copies,
        " and the star cut-offs" if stars else "",
    )


class RatingRange:
    """Lowest and highest star rating read, and the ratings off a 5-star scale."""

    def __init__(self) -> None:
        self.count = 0
        self.lowest = math.inf
        self.highest = -math.inf
        self.below_zero = 0
        self.above_five_stars = 0

    def add(self, value: float) -> None:
        """Count one rating."""
        self.count += 1
        self.lowest = min(self.lowest, value)
        self.highest = max(self.highest, value)
        if value < 0:
            self.below_zero += 1
        if value > FIVE_STAR_MAX:
            self.above_five_stars += 1

    def log(self, path: Path, star_rule: StarRule) -> None:
        """Log the range at INFO, and warn about ratings the cut-offs do not fit.

        Ratings above 5 are warned about only while the positive cut-off is on
        a 5-star scale, because cut-offs moved above 5 mean that the user has
        set them for a larger scale.
        """
        if not self.count:
            return
        logger.info(
            "star ratings in %s range from %g to %g", path, self.lowest, self.highest
        )
        if self.above_five_stars and star_rule.positive_min <= FIVE_STAR_MAX:
            logger.warning(
                "%s in %s %s above %d stars (the highest is %g), but the "
                "star cut-offs (negative up to %g, positive from %g) are for a "
                "%d-star scale, so they count as positive; for another scale "
                "set --negative-max-stars and --positive-min-stars",
                _count(self.above_five_stars, "rating"),
                path,
                "is" if self.above_five_stars == 1 else "are",
                FIVE_STAR_MAX,
                self.highest,
                star_rule.negative_max,
                star_rule.positive_min,
                FIVE_STAR_MAX,
            )
        # Cut-offs moved below 0 are for a scale with negative values, such
        # as labels of -1 and 1.
        if self.below_zero and star_rule.negative_max >= 0:
            logger.warning(
                "%s in %s %s below 0 stars (the lowest is %g), which no "
                "star scale has; such ratings are labelled by the cut-offs like "
                "other ratings (negative up to %g), so check the rating column",
                _count(self.below_zero, "rating"),
                path,
                "is" if self.below_zero == 1 else "are",
                self.lowest,
                star_rule.negative_max,
            )


def _count(number: int, noun: str) -> str:
    """Return "1 row" or "3 rows": the number and the noun in the right form."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _log_bad_rows(bad_rows: list[BadRow], path: Path) -> None:
    """Warn how many bad rows were left out, the lines they span and the first few.

    A bad row after the first few that spans more than one line is named too,
    because a quote that closes many lines later can join many reviews into it.
    """
    described = [_describe_bad_row(row) for row in bad_rows[:_LOGGED_BAD_ROWS]]
    files = len({row.source for row in bad_rows})
    message = left_out_message(
        len(bad_rows), path, sum(row.lines for row in bad_rows), described, files
    )
    longest = max(bad_rows, key=lambda row: row.lines)
    if longest.lines > 1 and longest not in bad_rows[:_LOGGED_BAD_ROWS]:
        message += f"; the longest: {_describe_bad_row(longest)}"
    rest = bad_rows[_LOGGED_BAD_ROWS:]
    if rest and logger.isEnabledFor(logging.DEBUG):
        message += "; the others follow"
    elif rest:
        message += f"; -v lists the other {len(rest)}"
    logger.warning("%s", message)
    for row in rest:
        logger.debug("left out bad row %s", _describe_bad_row(row))


def left_out_message(
    count: int, source: object, lines: int, described: list[str], files: int = 1
) -> str:
    """Describe the bad rows left out of a file: how many, their lines, the first few.

    Args:
        count: Bad rows left out.
        source: The file or folder, as named in messages.
        lines: Physical lines that the bad rows span.
        described: Descriptions of the first few rows.
        files: Files that the bad rows are in, such as the review files of
            a folder, whose lines are not counted together.
    """
    rows = "; ".join(described)
    if files > 1:
        span = f" in {files} files"
    elif count == 1:
        span = "" if lines == 1 else f" spanning {lines} lines"
    else:
        span = f" spanning {lines} lines"
    if count == 1:
        return f"left out 1 bad row of {source}{span}: {rows}"
    first = f"; the first {len(described)}" if count > len(described) else ""
    return f"left out {count} bad rows of {source}{span}{first}: {rows}"


def _describe_bad_row(row: BadRow) -> str:
    if row.lines == 1:
        return f"{row.source} line {row.line}: {row.reason}"
    last = row.line + row.lines - 1
    return f"{row.source} lines {row.line} to {last}: {row.reason}"
