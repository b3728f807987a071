"""Tests for the seeded, stratified train/validation/test split."""

from collections import Counter

import pytest

from sentiment_lstm.data import DataError, Example, split_examples


def make_examples(negatives: int, positives: int) -> list[Example]:
    labels = [0] * negatives + [1] * positives
    return [
        Example(text=f"review {i}", label=label, source="reviews.csv", line=i + 2)
        for i, label in enumerate(labels)
    ]


def test_default_sizes() -> None:
    train, validation, test = split_examples(make_examples(600, 400), seed=0)

    assert len(train) == 800
    assert len(validation) == 100
    assert len(test) == 100


def test_parts_are_disjoint_and_complete() -> None:
    examples = make_examples(600, 400)

    train, validation, test = split_examples(examples, seed=0)
    lines = [example.line for example in train + validation + test]

    assert sorted(lines) == sorted(example.line for example in examples)


def test_stratified_by_label() -> None:
    train, validation, test = split_examples(make_examples(600, 400), seed=3)

    assert Counter(e.label for e in train) == {0: 480, 1: 320}
    assert Counter(e.label for e in validation) == {0: 60, 1: 40}
    assert Counter(e.label for e in test) == {0: 60, 1: 40}


def test_same_seed_same_split() -> None:
    examples = make_examples(60, 40)

    first = split_examples(examples, seed=7)
    second = split_examples(examples, seed=7)

    assert first == second


def test_other_seed_other_split() -> None:
    examples = make_examples(60, 40)

    first = split_examples(examples, seed=7)
    second = split_examples(examples, seed=8)

    assert first[2] != second[2]


def test_custom_fractions() -> None:
    train, validation, test = split_examples(
        make_examples(100, 100), seed=0, validation_fraction=0.25, test_fraction=0.15
    )

    assert (len(train), len(validation), len(test)) == (120, 50, 30)


def test_zero_fractions() -> None:
    examples = make_examples(10, 10)

    train, validation, test = split_examples(
        examples, seed=0, validation_fraction=0, test_fraction=0
    )

    assert train == examples
    assert validation == []
    assert test == []


def test_zero_validation_only() -> None:
    train, validation, test = split_examples(
        make_examples(50, 50), seed=0, validation_fraction=0.0
    )

    assert len(validation) == 0
    assert len(test) == 10
    assert len(train) == 90


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5, float("nan")])
def test_invalid_fraction(fraction: float) -> None:
    with pytest.raises(
        DataError, match=r"invalid test_fraction .*expected a number in \[0, 1\)"
    ):
        split_examples(make_examples(10, 10), seed=0, test_fraction=fraction)


def test_fractions_sum_to_one() -> None:
    with pytest.raises(DataError, match="keep their sum below 1"):
        split_examples(
            make_examples(10, 10), seed=0, validation_fraction=0.5, test_fraction=0.5
        )


def test_class_too_small() -> None:
    with pytest.raises(DataError) as excinfo:
        split_examples(make_examples(30, 1), seed=0)

    message = str(excinfo.value)
    assert "30 negative, 1 positive" in message
    assert "add examples of the smaller class" in message


def test_unlabelled_example_rejected() -> None:
    examples = make_examples(10, 10) + [
        Example(text="x", label=None, source="input.txt", line=4)
    ]

    with pytest.raises(DataError, match="input.txt line 4: the example has no label"):
        split_examples(examples, seed=0)
