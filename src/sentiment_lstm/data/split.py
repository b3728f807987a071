"""Seeded, stratified split into train, validation and test examples."""

import logging
from collections import Counter

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
        raise DataError(
            f"cannot split a stratified {part} part of {count} examples off "
            f"{len(examples)} examples ({_describe_counts(examples)}): {err}; "
            f"add examples of the smaller class, or set the {part} fraction to 0"
        ) from err
    remaining = [examples[i] for i in remaining_indices]
    return remaining, [examples[i] for i in split_indices]


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
    test_count = round(total * test_fraction)
    if test_fraction > 0:
        train, test = _split_off(train, max(1, test_count), seed, "test")
    validation_count = round(total * validation_fraction)
    if validation_fraction > 0:
        train, validation = _split_off(
            train, max(1, validation_count), seed, "validation"
        )

    # A part with fraction 0 is left out of the line, because it is empty or
    # a caller fills it from a file of its own and logs that.
    parts = [f"train {len(train)} ({_describe_counts(train)})"]
    if validation_fraction > 0:
        parts.append(f"validation {len(validation)}")
    if test_fraction > 0:
        parts.append(f"test {len(test)}")
    logger.info("split %d examples with seed %d: %s", total, seed, ", ".join(parts))
    return train, validation, test
