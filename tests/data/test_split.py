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
    assert "the positive class has only 1 review" in message
    assert "add positive reviews" in message


def test_tiny_fraction_advises_no_review_count() -> None:
    with pytest.raises(DataError) as excinfo:
        split_examples(make_examples(200, 200), seed=0, validation_fraction=1e-300)

    message = str(excinfo.value)
    assert "--validation-fraction 1e-300 gives 1" in message
    assert "use at least" not in message
    assert "raise --validation-fraction to" in message


def test_small_balanced_data_message() -> None:
    with pytest.raises(DataError) as excinfo:
        split_examples(make_examples(5, 5), seed=0)

    message = str(excinfo.value)
    assert "stratified test and validation parts off 10 reviews" in message
    assert "(5 negative, 5 positive)" in message
    assert "--test-fraction 0.1 gives 1 and --validation-fraction 0.1 gives 1" in (
        message
    )
    assert "each part needs at least 2, one of each class" in message
    assert "use at least 15 reviews" in message
    assert "raise --test-fraction and --validation-fraction to 0.15" in message
    assert "pass separate --test-data and --validation-data files" in message
    assert "smaller class" not in message
    assert "test_size" not in message


def test_small_test_part_message() -> None:
    with pytest.raises(DataError) as excinfo:
        split_examples(make_examples(5, 5), seed=0, validation_fraction=0.2)

    message = str(excinfo.value)
    assert "a stratified test part off 10 reviews" in message
    assert "--test-fraction 0.1 gives 1, but the part needs at least 2" in message
    assert "raise --test-fraction to 0.15" in message
    assert "pass a separate --test-data file" in message
    assert "set --test-fraction 0 to test on nothing" in message


def test_small_validation_part_message() -> None:
    with pytest.raises(DataError) as excinfo:
        split_examples(make_examples(2, 2), seed=0, test_fraction=0)

    message = str(excinfo.value)
    assert "a stratified validation part off 4 reviews" in message
    assert "--validation-fraction 0.1 gives 1" in message
    assert "raise --validation-fraction to 0.38" in message
    assert "pass a separate --validation-data file" in message
    assert "--validation-fraction 0 " not in message


@pytest.mark.parametrize(
    ("negatives", "positives", "fractions"),
    [
        (8, 7, {}),
        (5, 5, {"test_fraction": 0.15, "validation_fraction": 0.15}),
        (2, 2, {"test_fraction": 0, "validation_fraction": 0.38}),
    ],
)
def test_suggested_sizes_split(
    negatives: int, positives: int, fractions: dict[str, float]
) -> None:
    train, validation, test = split_examples(
        make_examples(negatives, positives), seed=0, **fractions
    )

    assert {example.label for example in validation} == {0, 1}
    assert len(train) >= 2


def test_class_too_small_after_test_part() -> None:
    with pytest.raises(DataError) as excinfo:
        split_examples(
            make_examples(3, 3), seed=0, test_fraction=0.6, validation_fraction=0.3
        )

    message = str(excinfo.value)
    assert "validation part off 2 reviews left after the test part" in message
    assert "class has only 1 review" in message


def test_fraction_not_suggested_when_no_training_left() -> None:
    with pytest.raises(DataError) as excinfo:
        split_examples(make_examples(1, 1), seed=0)

    message = str(excinfo.value)
    assert "use at least 15 reviews" in message
    assert "raise --test-fraction" not in message


def test_unlabelled_example_rejected() -> None:
    examples = make_examples(10, 10) + [
        Example(text="x", label=None, source="input.txt", line=4)
    ]

    with pytest.raises(DataError, match="input.txt line 4: the example has no label"):
        split_examples(examples, seed=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_small_class_in_every_part(seed: int) -> None:
    # 10 reviews of 103 hold 0.29 negative ones at the stratified share
    train, validation, test = split_examples(make_examples(3, 100), seed=seed)

    assert Counter(e.label for e in test) == {0: 1, 1: 9}
    assert Counter(e.label for e in validation) == {0: 1, 1: 9}
    assert Counter(e.label for e in train) == {0: 1, 1: 82}


def test_small_class_split_is_seeded() -> None:
    examples = make_examples(3, 100)

    first = split_examples(examples, seed=4)
    second = split_examples(examples, seed=4)

    assert first == second


def test_small_class_swap_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")

    split_examples(make_examples(3, 100), seed=0)

    assert "the stratified test part of 10 reviews had no negative review" in (
        caplog.text
    )
