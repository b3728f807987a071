"""Seeded, stratified split into train, validation and test examples."""

import logging
import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

from sentiment_lstm.data.records import LABEL_NAMES, DataError, Example

logger = logging.getLogger(__name__)


def _check_fraction(name: str, value: float) -> None:
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not is_number or not 0 <= value < 1:
        raise DataError(f"invalid {name} {value!r}; expected a number in [0, 1)")


def _describe_counts(examples: list[Example]) -> str:
    counts = Counter(example.label for example in examples)
    return ", ".join(
        f"{counts[index]} {name}" for index, name in enumerate(LABEL_NAMES)
    )


def _smallest_total(fraction: float, classes: int) -> int:
    """Return the fewest reviews whose fraction rounds to one per class or more."""
    total = max(1, math.floor((classes - 0.5) / fraction))
    while round(total * fraction) < classes:
        total += 1
    return total


def _smallest_fraction(total: int, classes: int) -> float:
    """Return the smallest fraction, in hundredths, of total that rounds to
    one review per class or more."""
    hundredths = math.ceil((classes - 0.5) / total * 100)
    while round(total * hundredths / 100) < classes:
        hundredths += 1
    return hundredths / 100


def _part_size(total: int, fraction: float) -> int:
    """Return the size of a held-out part: at least 1 for a fraction above 0."""
    return max(1, round(total * fraction)) if fraction > 0 else 0


def _check_part_sizes(
    examples: list[Example], validation_fraction: float, test_fraction: float
) -> None:
    """Raise unless each held-out part can get one review of each class.

    The message names the reviews, the fractions and the fixes that the train
    command accepts. A validation fraction of 0 is not among them, because
    train needs validation reviews to pick the best epoch.

    Raises:
        DataError: If a part with a fraction above 0 is smaller than the number
            of classes.
    """
    total = len(examples)
    classes = len({example.label for example in examples})
    fractions = {"test": test_fraction, "validation": validation_fraction}
    small = [
        part
        for part, fraction in fractions.items()
        if fraction > 0 and _part_size(total, fraction) < classes
    ]
    if not small:
        return

    sizes = " and ".join(
        f"--{part}-fraction {fractions[part]:g} gives "
        f"{_part_size(total, fractions[part])}"
        for part in small
    )
    needed = max(_smallest_total(fractions[part], classes) for part in small)
    # A tiny fraction such as 1e-300 needs more reviews than any data set has.
    fixes = [f"use at least {needed:,} reviews"] if needed <= _MAX_ADVISED_TOTAL else []
    larger = _smallest_fraction(total, classes)
    raised = {**fractions, **{part: larger for part in small}}
    training = total - sum(_part_size(total, value) for value in raised.values())
    if sum(raised.values()) < 1 and training >= classes:
        flags = " and ".join(f"--{part}-fraction" for part in small)
        fixes.append(f"raise {flags} to {larger:g}")
    files = " and ".join(f"--{part}-data" for part in small)
    if len(small) == 1:
        fixes.append(f"pass a separate {files} file")
        parts = f"a stratified {small[0]} part"
        needs = "the part needs"
    else:
        fixes.append(f"pass separate {files} files")
        parts = f"stratified {' and '.join(small)} parts"
        needs = "each part needs"
    if small == ["test"]:
        fixes.append("set --test-fraction 0 to test on nothing")
    raise DataError(
        f"cannot split {parts} off {total} reviews ({_describe_counts(examples)}): "
        f"{sizes}, but {needs} at least {classes}, one of each class; "
        f"{_join_fixes(fixes)}"
    )


def _check_part(
    examples: list[Example], count: int, part: str, *, total: int, fraction: float
) -> None:
    """Raise unless a stratified part of count examples can be split off.

    scikit-learn needs at least two examples of each class, and one of each
    class left for training. ``_check_part_sizes`` has already made sure that
    the part can hold one of each class.

    Args:
        examples: The examples to split the part off.
        count: Size of the part.
        part: "test" or "validation".
        total: Number of examples before any part was split off.
        fraction: The part's fraction of total.

    Raises:
        DataError: If a class or the rest is too small.
    """
    counts = Counter(example.label for example in examples)
    classes = len(counts)
    flag = f"--{part}-fraction"
    separate = [f"pass a separate --{part}-data file"]
    if part == "test":
        separate.append("set --test-fraction 0 to test on nothing")
    reviews = f"{len(examples)} reviews"
    if len(examples) < total:
        reviews += " left after the test part"
    cannot = (
        f"cannot split a stratified {part} part off {reviews} "
        f"({_describe_counts(examples)})"
    )

    label, smallest = min(counts.items(), key=lambda item: item[1])
    if smallest < 2:
        name = LABEL_NAMES[label]
        raise DataError(
            f"{cannot}: the {name} class has only {smallest} review, but a "
            "stratified split needs at least 2 of each class, one for the "
            f"{part} part and one for training; "
            f"{_join_fixes([f'add {name} reviews', *separate])}"
        )
    if len(examples) - count < classes:
        raise DataError(
            f"{cannot}: {flag} {fraction:g} gives {count}, which leaves "
            f"{len(examples) - count} for training, fewer than one of each class; "
            f"{_join_fixes([f'lower {flag}', 'use more reviews', *separate])}"
        )


# The maximum number of reviews that the split error advises using. A fraction
# that needs more is too small to be meant, so raising it is the fix left.
_MAX_ADVISED_TOTAL = 10**9


def _join_fixes(fixes: list[str]) -> str:
    """Join fixes as alternatives: "a, b, or c"."""
    if len(fixes) == 1:
        return fixes[0]
    return ", ".join(fixes[:-1]) + ", or " + fixes[-1]


def _split_off(
    examples: list[Example], count: int, seed: int, part: str
) -> tuple[list[Example], list[Example]]:
    """Split count examples off examples, stratified by label."""
    # imported here because scikit-learn takes about a second to import, and
    # prediction reaches this package without ever splitting
    from sklearn.model_selection import train_test_split

    labels = [example.label for example in examples]
    indices = np.arange(len(examples))
    try:
        remaining_indices, split_indices = train_test_split(
            indices, test_size=count, random_state=seed, shuffle=True, stratify=labels
        )
    except ValueError as err:
        # _check_part rejects every case known to fail; this is for the rest.
        raise DataError(
            f"cannot split a stratified {part} part of {count} reviews off "
            f"{len(examples)} reviews ({_describe_counts(examples)}): {err}"
        ) from err
    add_missing_classes(labels, remaining_indices, split_indices, part)
    remaining = [examples[i] for i in remaining_indices]
    return remaining, [examples[i] for i in split_indices]


def add_missing_classes(
    labels: Sequence[int],
    remaining_indices: np.ndarray,
    split_indices: np.ndarray,
    part: str,
) -> None:
    """Give the held-out part at least one review of each class, in place.

    A class whose stratified share of the part rounds to 0, such as 3
    negative reviews of 103 with a part of 10, would leave an accuracy that
    measures one class. For each missing class, the first of its reviews in
    the shuffled remaining order swaps places with the last held-out review
    of the part's largest class. The caller makes sure that the part has room
    for every class and that each class keeps a review outside it, as
    ``_check_part_sizes`` and ``_check_part`` do here. Splits that already
    have every class are left as scikit-learn made them.

    Args:
        labels: Label of each example that the indices point to.
        remaining_indices: Indices kept for training, in shuffled order.
        split_indices: Indices of the held-out part.
        part: Name of the part, for the log line.

    NOTE: for a model saved by a version without this swap, ``evaluate
    --split`` re-creates another split in these cases only.
    """
    part_counts = Counter(labels[i] for i in split_indices)
    for label in sorted(set(labels) - set(part_counts)):
        largest = max(part_counts, key=lambda known: (part_counts[known], -known))
        moved_in = next(
            position
            for position, index in enumerate(remaining_indices)
            if labels[index] == label
        )
        moved_out = max(
            position
            for position, index in enumerate(split_indices)
            if labels[index] == largest
        )
        remaining_indices[moved_in], split_indices[moved_out] = (
            split_indices[moved_out],
            remaining_indices[moved_in],
        )
        part_counts[largest] -= 1
        part_counts[label] += 1
        logger.info(
            "the stratified %s part of %d reviews had no %s review, so one was "
            "swapped in from the training part for a %s one",
            part,
            len(split_indices),
            LABEL_NAMES[label],
            LABEL_NAMES[largest],
        )


def split_examples(
    examples: list[Example],
    *,
    seed: int,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
) -> tuple[list[Example], list[Example], list[Example]]:
    """Split examples into train, validation and test parts, stratified by label.

    Part sizes are the fractions of all examples, rounded to whole examples but at
    least 1 for a fraction above 0, and each part keeps the label proportions of
    the input. The split uses
    scikit-learn's ``train_test_split``, so it is the same for the same seed and
    input order.

    Args:
        examples: Labelled examples.
        seed: Random seed of the shuffle.
        validation_fraction: Fraction of examples for validation, in [0, 1). With 0
            the validation part is empty.
        test_fraction: Fraction of examples for testing, in [0, 1). With 0 the test
            part is empty.

    Returns:
        The train, validation and test examples.

    Raises:
        DataError: If a fraction is outside [0, 1), the fractions sum to 1 or more,
            an example has no label, or a class has too few examples for a part.
    """
    _check_fraction("validation_fraction", validation_fraction)
    _check_fraction("test_fraction", test_fraction)
    if validation_fraction + test_fraction >= 1:
        raise DataError(
            f"invalid fractions: validation_fraction {validation_fraction} plus "
            f"test_fraction {test_fraction} leaves no training data; keep their sum "
            "below 1"
        )
    if not examples:
        raise DataError("cannot split an empty list of examples; read the data first")
    for example in examples:
        if example.label is None:
            raise DataError(
                f"{example.source} line {example.line}: the example has no label, so "
                "it cannot be split for training; read the data with labels"
            )

    total = len(examples)
    train = list(examples)
    test: list[Example] = []
    validation: list[Example] = []
    _check_part_sizes(examples, validation_fraction, test_fraction)
    if test_fraction > 0:
        test_count = _part_size(total, test_fraction)
        _check_part(train, test_count, "test", total=total, fraction=test_fraction)
        train, test = _split_off(train, test_count, seed, "test")
    if validation_fraction > 0:
        validation_count = _part_size(total, validation_fraction)
        _check_part(
            train,
            validation_count,
            "validation",
            total=total,
            fraction=validation_fraction,
        )
        train, validation = _split_off(train, validation_count, seed, "validation")

    # A part with fraction 0 is left out of the line, because it is empty or
    # a caller fills it from a file of its own and logs that.
    parts = [f"train {len(train)} ({_describe_counts(train)})"]
    if validation_fraction > 0:
        parts.append(f"validation {len(validation)}")
    if test_fraction > 0:
        parts.append(f"test {len(test)}")
    logger.info("split %d examples with seed %d: %s", total, seed, ", ".join(parts))
    return train, validation, test
