"""Tests for folders with one review file per review (aclImdb layout)."""

import logging
from pathlib import Path

import pytest

from sentiment_lstm.data import DataError, ReadOptions, read_examples, read_texts


def write_reviews(folder: Path, reviews: dict[str, str]) -> None:
    for relative, text in reviews.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_pos_neg_folders(tmp_path: Path) -> None:
    write_reviews(
        tmp_path,
        {
            "pos/10_9.txt": "Great.<br /><br />Really.\n",
            "pos/2_8.txt": "Good fun.",
            "neg/1_1.txt": "Awful.",
        },
    )

    result = read_examples(tmp_path)

    assert [example.text for example in result.examples] == [
        "Awful.",
        "Great.<br /><br />Really.",
        "Good fun.",
    ]
    assert [example.label for example in result.examples] == [0, 1, 1]
    assert {example.line for example in result.examples} == {1}
    assert result.examples[1].source == str(tmp_path / "pos" / "10_9.txt")


def test_train_and_test_both_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_reviews(
        tmp_path,
        {
            "train/pos/0_9.txt": "train good",
            "train/neg/0_2.txt": "train bad",
            "train/unsup/0_0.txt": "no label",
            "test/pos/0_10.txt": "test good",
            "test/neg/0_1.txt": "test bad",
            "imdb.vocab": "the\n",
        },
    )

    with caplog.at_level(logging.INFO, logger="sentiment_lstm.data"):
        result = read_examples(tmp_path)

    assert [example.text for example in result.examples] == [
        "train bad",
        "train good",
        "test bad",
        "test good",
    ]
    assert len(result.files) == 4
    assert result.files == sorted(result.files)
    assert "unsup" in caplog.text
    assert "imdb.vocab" in caplog.text
    assert (
        f"the reviews of train/ and test/ are read as one set; to keep test/ as "
        f"the test split in train, pass --data {tmp_path / 'train'} --test-data "
        f"{tmp_path / 'test'}" in caplog.text
    )


def test_train_folder_directly(tmp_path: Path) -> None:
    write_reviews(
        tmp_path,
        {
            "train/pos/0_9.txt": "train good",
            "train/neg/0_2.txt": "train bad",
            "test/pos/0_10.txt": "test good",
            "test/neg/0_1.txt": "test bad",
        },
    )

    result = read_examples(tmp_path / "train")

    assert [example.text for example in result.examples] == ["train bad", "train good"]


def test_non_text_file_ignored_with_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_reviews(
        tmp_path,
        {"pos/a.txt": "good", "pos/notes.md": "not a review", "neg/b.txt": "bad"},
    )

    with caplog.at_level(logging.WARNING, logger="sentiment_lstm.data"):
        result = read_examples(tmp_path)

    assert len(result.examples) == 2
    assert "notes.md" in caplog.text


def test_hidden_files_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_reviews(tmp_path, {"pos/a.txt": "good", "neg/b.txt": "bad"})
    (tmp_path / "pos" / "._a.txt").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00")
    (tmp_path / "neg" / ".draft.txt").write_text("not finished")

    with caplog.at_level(logging.INFO, logger="sentiment_lstm.data"):
        result = read_examples(tmp_path)

    assert [example.text for example in result.examples] == ["bad", "good"]
    assert "._a.txt" in caplog.text
    assert ".draft.txt" in caplog.text
    assert "only uses *.txt files whose names do not start with '.'" in caplog.text


def test_empty_review_file(tmp_path: Path) -> None:
    write_reviews(tmp_path, {"pos/a.txt": "good", "neg/b.txt": " \n"})

    with pytest.raises(DataError, match=r"b\.txt line 1: empty review"):
        read_examples(tmp_path)


def test_read_summary_counts_unscorable_reviews(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_reviews(tmp_path, {"pos/a.txt": "good", "neg/b.txt": "bad", "neg/c.txt": ""})

    with caplog.at_level(logging.INFO, logger="sentiment_lstm"):
        result = read_texts(tmp_path, ReadOptions(keep_unscored=True))
    summaries = [
        r.getMessage() for r in caplog.records if "reviews from" in r.getMessage()
    ]

    assert len(result.unscored) == 1
    assert summaries == [
        f"read 2 reviews from {tmp_path} (1 negative, 1 positive), and 1 more that "
        "cannot be scored"
    ]


def test_link_across_classes_is_bad_row(tmp_path: Path) -> None:
    write_reviews(tmp_path, {"pos/a.txt": "good", "neg/b.txt": "bad"})
    (tmp_path / "pos" / "c.txt").symlink_to(tmp_path / "neg" / "b.txt")

    with pytest.raises(DataError) as raised:
        read_examples(tmp_path)
    skipped = read_examples(tmp_path, ReadOptions(skip_bad_rows=True))
    scored = read_texts(tmp_path, ReadOptions(keep_unscored=True))

    assert str(raised.value) == (
        f"{tmp_path / 'pos' / 'c.txt'} line 1: the same file as "
        f"{tmp_path / 'neg' / 'b.txt'} (through a link), which neg/ labels "
        "otherwise; remove the link, or use --skip-bad-rows to leave such rows out"
    )
    assert [example.text for example in skipped.examples] == ["bad", "good"]
    # Scoring needs no labels, so it scores both names.
    assert len(scored.examples) == 3


def test_half_split_folder_warned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_reviews(
        tmp_path,
        {"train/pos/a.txt": "good", "train/neg/b.txt": "bad", "test/pos/c.txt": "x"},
    )

    with caplog.at_level(logging.WARNING, logger="sentiment_lstm"):
        result = read_examples(tmp_path)

    assert len(result.examples) == 2
    assert caplog.messages == [
        f"{tmp_path / 'test'} has pos/ but no neg/, so its reviews are not read; "
        f"add {tmp_path / 'test' / 'neg'}"
    ]


def test_undecodable_review_file(tmp_path: Path) -> None:
    write_reviews(tmp_path, {"pos/a.txt": "good", "neg/b.txt": "bad"})
    (tmp_path / "neg" / "c.txt").write_bytes(b"caf\xe9 \x9d")

    result = read_examples(tmp_path, ReadOptions(skip_bad_rows=True))

    assert len(result.examples) == 2
    assert result.bad_rows[0].reason == "byte 0x9d is invalid in cp1252"


def test_folder_without_layout(tmp_path: Path) -> None:
    write_reviews(tmp_path, {"good/a.txt": "good"})

    with pytest.raises(DataError, match="cannot detect the data format"):
        read_examples(tmp_path)


@pytest.mark.parametrize(
    ("folders", "note"),
    [
        (["pos"], "{root} has pos/ but no neg/, so add a neg/ folder"),
        (["train/neg"], "{root}/train has neg/ but no pos/, so add a pos/ folder"),
        (
            ["POS", "Neg"],
            "{root} has Neg/ and POS/, but the class folders must be named pos/ "
            "and neg/ in lower case",
        ),
        (
            ["Pos", "neg"],
            "{root} has Pos/, but the class folders must be named pos/ and neg/ "
            "in lower case",
        ),
    ],
)
def test_partial_folder_layout_named(
    tmp_path: Path, folders: list[str], note: str
) -> None:
    root = tmp_path / "reviews"
    for folder in folders:
        (root / folder).mkdir(parents=True)
        (root / folder / "1.txt").write_text("a review", encoding="utf-8")

    with pytest.raises(DataError) as detected:
        read_examples(root)
    with pytest.raises(DataError) as required:
        read_examples(root, ReadOptions(format="folder"))

    assert note.format(root=root) in str(detected.value)
    assert note.format(root=root) in str(required.value)


def test_folder_format_needs_layout(tmp_path: Path) -> None:
    write_reviews(tmp_path, {"good/a.txt": "good"})

    with pytest.raises(DataError, match="expected pos/ and neg/ subfolders"):
        read_examples(tmp_path, ReadOptions(format="folder"))


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (1, "1 review file under {root} is not valid UTF-8, so it was decoded"),
        (2, "2 review files under {root} are not valid UTF-8, so they were decoded"),
    ],
)
def test_cp1252_files_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, files: int, expected: str
) -> None:
    write_reviews(tmp_path, {"neg/1_1.txt": "Awful."})
    (tmp_path / "pos").mkdir()
    for number in range(files):
        (tmp_path / "pos" / f"{number}_9.txt").write_bytes(b"Caf\xe9 fun.")

    with caplog.at_level(logging.INFO, logger="sentiment_lstm.data"):
        read_examples(tmp_path)

    assert expected.format(root=tmp_path) in caplog.text


def test_txt_names_that_are_not_files_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_reviews(
        tmp_path,
        {
            "pos/1.txt": "great fun",
            "pos/UPPER.TXT": "fine work",
            "neg/1.txt": "dull mess",
            "neg/notes.md": "not a review",
        },
    )
    (tmp_path / "pos" / "folder.txt").mkdir()
    (tmp_path / "neg" / "fifo.txt").symlink_to("/dev/null")

    with caplog.at_level(logging.INFO, logger="sentiment_lstm.data"):
        result = read_examples(tmp_path)

    assert sorted(example.text for example in result.examples) == [
        "dull mess",
        "fine work",
        "great fun",
    ]
    assert (
        f"ignored in {tmp_path / 'pos'}, because they are folders or other "
        "non-files: folder.txt" in caplog.text
    )
    assert (
        f"ignored in {tmp_path / 'neg'}, because they are folders or other "
        "non-files: fifo.txt" in caplog.text
    )
    assert f"ignored in {tmp_path / 'neg'}, which only uses *.txt files: notes.md" in (
        caplog.text
    )


def test_huge_review_file_not_read(tmp_path: Path) -> None:
    # A sparse file over 4 bytes a character of the limit is kept unscored
    # without being read.
    from sentiment_lstm.text import MAX_REVIEW_CHARS

    write_reviews(tmp_path, {"pos/1.txt": "Good fun.", "neg/1.txt": "Awful."})
    with open(tmp_path / "pos" / "2.txt", "wb") as stream:
        stream.truncate(4 * MAX_REVIEW_CHARS + 5)

    result = read_texts(tmp_path, ReadOptions(keep_unscored=True))

    assert [example.text for example in result.examples] == ["Awful.", "Good fun."]
    assert [row.source[-9:] for row in result.unscored] == ["pos/2.txt"]
    assert result.unscored[0].reason == (
        "the file has more than 67,108,868 bytes, more than a review of "
        "16,777,216 characters can take, so it is not read"
    )
    with pytest.raises(DataError, match="the file has more than 67,108,868 bytes"):
        read_examples(tmp_path)


def test_long_review_file_unscored(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("sentiment_lstm.data.folders.MAX_REVIEW_CHARS", 20)
    write_reviews(tmp_path, {"pos/1.txt": "Good fun.", "neg/1.txt": "Awful. " * 10})

    result = read_texts(tmp_path, ReadOptions(keep_unscored=True))

    assert [example.text for example in result.examples] == ["Good fun."]
    assert result.unscored[0].line == 1
    assert result.unscored[0].text == ""


def test_broken_link_is_bad_row(tmp_path: Path) -> None:
    write_reviews(tmp_path, {"pos/1.txt": "great fun", "neg/1.txt": "dull mess"})
    link = tmp_path / "neg" / "2.txt"
    link.symlink_to(tmp_path / "elsewhere.txt")

    with pytest.raises(DataError) as error:
        read_examples(tmp_path)
    result = read_examples(tmp_path, ReadOptions(skip_bad_rows=True))

    assert str(error.value).startswith(
        f"{link} line 1: a broken link: its target {tmp_path / 'elsewhere.txt'} "
        "does not exist; restore the target or remove the link"
    )
    assert [row.source for row in result.bad_rows] == [str(link)]
    assert len(result.examples) == 2


def test_skipped_files_counted_as_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_reviews(tmp_path, {"pos/a.txt": "good", "neg/b.txt": "bad"})
    (tmp_path / "neg" / "c.txt").write_bytes(b"")
    (tmp_path / "pos" / "d.txt").write_bytes(b"  \n")

    with caplog.at_level(logging.WARNING, logger="sentiment_lstm.data"):
        read_examples(tmp_path, ReadOptions(skip_bad_rows=True))

    assert f"left out 2 bad rows of {tmp_path} in 2 files: " in caplog.text
    assert "spanning" not in caplog.text


def test_link_loop_and_chain_named(tmp_path: Path) -> None:
    write_reviews(tmp_path, {"pos/1.txt": "great fun", "neg/1.txt": "dull mess"})
    (tmp_path / "neg" / "2.txt").symlink_to("3.txt")
    (tmp_path / "neg" / "3.txt").symlink_to("2.txt")
    (tmp_path / "pos" / "2.txt").symlink_to(tmp_path / "moved.txt")
    (tmp_path / "moved.txt").symlink_to(tmp_path / "gone.txt")

    result = read_examples(tmp_path, ReadOptions(skip_bad_rows=True))
    reasons = {row.source: row.reason for row in result.bad_rows}

    assert reasons[str(tmp_path / "neg" / "2.txt")] == (
        "a broken link: the links form a loop"
    )
    # The end of the chain, not the link's own target, is missing.
    assert reasons[str(tmp_path / "pos" / "2.txt")] == (
        f"a broken link: its target {tmp_path / 'gone.txt'} does not exist"
    )
