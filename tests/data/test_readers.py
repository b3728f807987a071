"""Tests for format detection, read options and the read entry points."""

import logging
import os
from pathlib import Path

import pytest

from sentiment_lstm.data import DataError, ReadOptions, read_examples, read_texts


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data path not found"):
        read_examples(tmp_path / "missing.csv")


def test_invalid_format_option() -> None:
    with pytest.raises(DataError, match="invalid data format 'xlsx'"):
        ReadOptions(format="xlsx")


def test_empty_column_option() -> None:
    with pytest.raises(DataError, match="the column name is empty"):
        ReadOptions(text_column=" ")


def test_csv_format_needs_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is a folder; pass a csv file"):
        read_examples(tmp_path, ReadOptions(format="csv"))


@pytest.mark.parametrize("data_format", ["csv", None])
def test_pipe_rejected(tmp_path: Path, data_format: str | None) -> None:
    pipe = tmp_path / "reviews.csv"
    os.mkfifo(pipe)

    with pytest.raises(DataError, match="not a regular file .* cannot be read twice"):
        read_examples(pipe, ReadOptions(format=data_format))


def test_folder_prefers_review_layout(tmp_path: Path) -> None:
    (tmp_path / "pos").mkdir()
    (tmp_path / "neg").mkdir()
    (tmp_path / "pos" / "a.txt").write_text("good", encoding="utf-8")
    (tmp_path / "neg" / "b.txt").write_text("bad", encoding="utf-8")
    (tmp_path / "extra.pos").write_text("unused\n", encoding="utf-8")

    result = read_examples(tmp_path)

    assert [example.text for example in result.examples] == ["bad", "good"]


def test_read_texts_ignores_require_labels(tmp_path: Path) -> None:
    path = tmp_path / "input.csv"
    path.write_text("text\nloved it\n", encoding="utf-8")

    result = read_texts(path, ReadOptions(require_labels=True))

    assert result.examples[0].label is None


def test_read_texts_keeps_posneg_labels(tmp_path: Path) -> None:
    (tmp_path / "r.pos").write_text("good\n", encoding="utf-8")
    (tmp_path / "r.neg").write_text("bad\n", encoding="utf-8")

    result = read_texts(tmp_path / "r.pos")

    assert [example.label for example in result.examples] == [0, 1]


def test_all_rows_bad(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    path.write_text("text,label\n,1\n", encoding="utf-8")

    with pytest.raises(DataError, match=r"no reviews found \(1 bad row, ") as error:
        read_examples(path, ReadOptions(skip_bad_rows=True))

    assert f"the first bad row, {path} line 2: " in str(error.value)
    assert "(--text-column, --label-column, --stars)" in str(error.value)


def test_read_texts_keeps_unscored_in_place(tmp_path: Path) -> None:
    (tmp_path / "r.neg").write_bytes(b"bad\n\n")
    (tmp_path / "r.pos").write_bytes(b"  \nfine \x81 film\ngood\n")

    result = read_texts(tmp_path / "r.pos", ReadOptions(keep_unscored=True))

    assert [(e.text, e.source[-5:], e.line) for e in result.examples] == [
        ("bad", "r.neg", 1),
        ("good", "r.pos", 3),
    ]
    assert [
        (row.text, row.source[-5:], row.line, row.reason, row.position)
        for row in result.unscored
    ] == [
        ("", "r.neg", 2, "empty review", 1),
        ("", "r.pos", 1, "empty review", 1),
        ("fine \udc81 film", "r.pos", 2, "byte 0x81 is invalid in cp1252", 1),
    ]
    assert result.bad_rows == []


def test_read_texts_keeps_a_folder_of_unscored_files(tmp_path: Path) -> None:
    for name in ("pos", "neg"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "a.txt").write_text(" \n", encoding="utf-8")

    result = read_texts(tmp_path, ReadOptions(keep_unscored=True))

    assert result.examples == []
    assert [row.source[-9:] for row in result.unscored] == ["neg/a.txt", "pos/a.txt"]


def test_keep_unscored_needs_prediction_input(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    path.write_text("text,label\n,1\ngood,1\n", encoding="utf-8")

    with pytest.raises(DataError, match="line 2: empty review"):
        read_examples(path, ReadOptions(keep_unscored=True))
    result = read_texts(path, ReadOptions(keep_unscored=True))
    assert [row.line for row in result.unscored] == [2]


@pytest.mark.parametrize("path", ["", "  "])
def test_empty_data_path(path: str) -> None:
    with pytest.raises(DataError, match="the data path is empty"):
        read_examples(path)


def test_file_without_label_column_logged_plainly(tmp_path: Path, caplog) -> None:
    path = tmp_path / "reviews.csv"
    path.write_text("text\ngreat fun\n", encoding="utf-8")

    with caplog.at_level(logging.INFO, logger="sentiment_lstm"):
        read_texts(path)

    assert f"{path}: text column 'text'\n" in caplog.text
    assert "label column" not in caplog.text
    assert "None" not in caplog.text
    assert f"read 1 review from {path} (" in caplog.text


@pytest.mark.parametrize("label", ["１", "1_0", "٠", ".5", "0x1"])
def test_label_outside_ascii_decimal_rejected(label: str) -> None:
    from sentiment_lstm.data.labels import LabelError, parse_label

    with pytest.raises(LabelError, match="unknown label"):
        parse_label(label)


@pytest.mark.parametrize(("label", "expected"), [("1", 1), (" 0.0 ", 0), ("+1", 1)])
def test_label_ascii_numbers_accepted(label: str, expected: int) -> None:
    from sentiment_lstm.data.labels import parse_label

    assert parse_label(label) == expected


@pytest.mark.parametrize(
    ("label", "expected"),
    [("TRUE", 1), ("False", 0), (" true ", 1), ("FALSE", 0)],
)
def test_label_boolean_words_accepted(label: str, expected: int) -> None:
    from sentiment_lstm.data.labels import parse_label

    assert parse_label(label) == expected


def test_csv_boolean_labels_read(tmp_path: Path) -> None:
    # As a spreadsheet saves a column of booleans.
    path = tmp_path / "reviews.csv"
    path.write_text(
        "review,recommended\ngreat fun,TRUE\na dull mess,FALSE\n", encoding="utf-8"
    )

    result = read_examples(path, ReadOptions(label_column="recommended"))

    assert [(example.text, example.label) for example in result.examples] == [
        ("great fun", 1),
        ("a dull mess", 0),
    ]


@pytest.mark.parametrize("rating", ["1_0", "５", "4 stars"])
def test_rating_outside_ascii_decimal_rejected(rating: str) -> None:
    from sentiment_lstm.data.labels import LabelError, parse_rating
    from sentiment_lstm.data.records import StarRule

    with pytest.raises(LabelError, match="invalid rating"):
        parse_rating(rating, StarRule())


def test_read_option_differences_keep_exact_cut_offs() -> None:
    from sentiment_lstm.provenance import read_option_differences

    saved = {"stars": True, "negative_max_stars": 2.5, "positive_min_stars": 2.5000001}
    current = {"stars": True, "negative_max_stars": 2.0, "positive_min_stars": 4.0}

    differences = read_option_differences(saved, current)

    assert "--negative-max-stars 2 (training: 2.5)" in differences
    assert "--positive-min-stars 4 (training: 2.5000001)" in differences


def test_csv_under_txt_name_hints_at_format(tmp_path: Path) -> None:
    path = tmp_path / "reviews.txt"
    path.write_text("text,stars\ngood film,5\nbad film,1\n")

    with pytest.raises(DataError) as excinfo:
        read_examples(path, ReadOptions(stars=True))
    examples = read_examples(path, ReadOptions(stars=True, format="csv")).examples

    assert "pass its format with --data-format" in str(excinfo.value)
    assert [example.label for example in examples] == [1, 0]


def test_unknown_extension_of_compressed_file_says_unpack(tmp_path: Path) -> None:
    import gzip

    path = tmp_path / "reviews.csv.gz"
    path.write_bytes(gzip.compress(b"text,label\ngood film,pos\n"))

    with pytest.raises(DataError, match="the file is gzip-compressed, not text"):
        read_examples(path)


def test_name_without_extension_named(tmp_path: Path) -> None:
    path = tmp_path / "reviews"
    path.write_text("great film\n")

    with pytest.raises(DataError, match="from a name without an extension"):
        read_texts(path)


def test_review_file_removed_after_listing(tmp_path: Path) -> None:
    from sentiment_lstm.data.folders import read_review_file

    removed = tmp_path / "1.txt"

    review, encoding = read_review_file(removed)

    assert review.reason == "file not found: it was removed while the folder was read"
    assert encoding is None


def test_texts_with_both_labels_warned(tmp_path: Path, caplog) -> None:
    path = tmp_path / "reviews.csv"
    path.write_text(
        "text,stars\n"
        "Good,5\n"
        "awful,1\n"
        "Good,1\n"
        "Good,4\n"
        "fine,2\n"
        "fine,5\n"
        "great,5\n",
        encoding="utf-8",
    )

    with caplog.at_level(logging.WARNING, logger="sentiment_lstm"):
        result = read_examples(path, ReadOptions(stars=True))

    assert len(result.examples) == 7
    assert (
        f"2 texts occur with both labels in {path}, in 5 of its 7 labelled "
        "reviews, such as 'Good' (2 positive, the first at line 2; 1 negative, "
        "the first at line 4); a model gets at least 2 of these 5 wrong "
        "whatever it learns; check the labels and the star cut-offs"
    ) in caplog.text


def test_both_labels_ignore_case_and_spacing(tmp_path: Path, caplog) -> None:
    path = tmp_path / "reviews.csv"
    path.write_text(
        'text,label\nGood,positive\ngood,negative\n" Good ",negative\n'
        "GOOD,TRUE\nGood  movie,positive\ngood movie,negative\n",
        encoding="utf-8",
    )

    with caplog.at_level(logging.WARNING, logger="sentiment_lstm"):
        read_examples(path)

    assert (
        f"2 texts occur with both labels in {path}, in 6 of its 6 labelled "
        "reviews, such as 'Good' (2 positive, the first at line 2; 2 negative, "
        "the first at line 3); a model gets at least 3 of these 6 wrong"
    ) in caplog.text


def test_both_labels_skip_unlabelled_copies(tmp_path: Path, caplog) -> None:
    # Prediction input may leave labels out; those copies count for neither.
    path = tmp_path / "reviews.csv"
    path.write_text(
        "text,label\nGood,\nGood,positive\nGood,negative\n", encoding="utf-8"
    )

    with caplog.at_level(logging.WARNING, logger="sentiment_lstm"):
        read_texts(path)

    assert (
        "'Good' (1 positive, the first at line 3; 1 negative, the first at " "line 4)"
    ) in caplog.text


def test_both_labels_pair_names_files(tmp_path: Path, caplog) -> None:
    (tmp_path / "reviews.pos").write_text("a fine film\nwitty\n", encoding="utf-8")
    (tmp_path / "reviews.neg").write_text("dull\nwitty\n", encoding="utf-8")

    with caplog.at_level(logging.WARNING, logger="sentiment_lstm"):
        read_examples(tmp_path / "reviews.pos")

    assert "1 text occurs with both labels" in caplog.text
    assert (
        f"'witty' (1 positive, the first at {tmp_path / 'reviews.pos'} line 2; "
        f"1 negative, the first at {tmp_path / 'reviews.neg'} line 2)"
    ) in caplog.text
    assert "check the labels\n" in caplog.text + "\n"
    assert "star" not in caplog.text


def test_repeats_one_label_not_warned(tmp_path: Path, caplog) -> None:
    path = tmp_path / "reviews.csv"
    path.write_text(
        "text,label\nGood,positive\nGood,positive\nbad,negative\n", encoding="utf-8"
    )

    with caplog.at_level(logging.WARNING, logger="sentiment_lstm"):
        read_examples(path)

    assert "both labels" not in caplog.text
