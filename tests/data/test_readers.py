"""Tests for format detection, read options and the read entry points."""

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
    with pytest.raises(DataError, match="file not found"):
        read_examples(tmp_path, ReadOptions(format="csv"))


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

    with pytest.raises(DataError, match=r"no reviews found \(1 bad rows"):
        read_examples(path, ReadOptions(skip_bad_rows=True))
