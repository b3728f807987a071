"""Tests for pos/neg pairs and plain text files with one review per line."""

import logging
from pathlib import Path

import pytest

from sentiment_lstm.data import DataError, ReadOptions, read_examples, read_texts


def write_pair(folder: Path, neg: bytes, pos: bytes, stem: str = "reviews") -> Path:
    (folder / f"{stem}.neg").write_bytes(neg)
    (folder / f"{stem}.pos").write_bytes(pos)
    return folder / f"{stem}.pos"


def test_cp1252_ellipsis_does_not_split(tmp_path: Path) -> None:
    pos = write_pair(
        tmp_path,
        neg=b"dull \x85 and slow .\nflat .\n",
        pos=b"fun \x85 truly great .\nwarm .\n\x85 a caf\xe9 hit .\n",
    )

    result = read_examples(pos)

    assert len(result.examples) == 5
    assert [example.label for example in result.examples] == [0, 0, 1, 1, 1]
    assert result.examples[0].text == "dull \u2026 and slow ."
    assert result.examples[4].text == "\u2026 a caf\u00e9 hit ."
    assert result.examples[4].line == 3


def test_unicode_line_separators_kept(tmp_path: Path) -> None:
    text = "one \u0085 two \u2028 three\nfour\n"
    pos = write_pair(tmp_path, neg=b"bad .\n", pos=text.encode("utf-8"))

    result = read_examples(pos)
    positives = [example for example in result.examples if example.label == 1]

    assert len(positives) == 2
    assert positives[0].text == "one \u0085 two \u2028 three"


def test_utf8_bom_stripped(tmp_path: Path) -> None:
    pos = write_pair(
        tmp_path,
        neg=b"\xef\xbb\xbfbad \xe2\x80\x94 awful .\n",
        pos=b"\xef\xbb\xbfgood .\n",
    )

    result = read_examples(pos)

    assert result.examples[0].text == "bad \u2014 awful ."
    assert result.examples[1].text == "good ."


def test_crlf_line_ends(tmp_path: Path) -> None:
    pos = write_pair(tmp_path, neg=b"bad .\r\nworse .\r\n", pos=b"good .\r\n")

    result = read_examples(pos)

    assert [example.text for example in result.examples] == [
        "bad .",
        "worse .",
        "good .",
    ]
    assert result.examples[1].line == 2


def test_lone_carriage_returns_warned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pos = write_pair(
        tmp_path,
        neg=b"bad .\r\nworse .\r\n",
        pos=b"good .\rfine .\nwarm .\r\r\nnice\rcast\rplot .\n",
    )
    caplog.set_level(logging.WARNING)

    result = read_examples(pos)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]

    assert [example.text for example in result.examples][2:] == [
        "good .\rfine .",
        "warm .",
        "nice\rcast\rplot .",
    ]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"2 lines of {tmp_path / 'reviews.pos'} contain")
    assert "convert them to \\n" in warnings[0]


def test_carriage_return_warning_before_bad_row_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pos = write_pair(tmp_path, neg=b"bad .\n", pos=b"great\rfun\n\nmoving film\n")
    caplog.set_level(logging.WARNING)

    with pytest.raises(DataError, match="line 2: empty review"):
        read_examples(pos)

    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"1 line of {tmp_path / 'reviews.pos'} contains")


def test_undefined_cp1252_byte_names_line(tmp_path: Path) -> None:
    pos = write_pair(tmp_path, neg=b"bad \x85 .\n", pos=b"good .\nodd \x81 byte .\n")

    with pytest.raises(DataError) as excinfo:
        read_examples(pos)

    message = str(excinfo.value)
    assert "reviews.pos line 2:" in message
    assert "byte 0x81 is invalid in cp1252" in message
    assert "--skip-bad-rows" in message


def test_undefined_byte_skipped(tmp_path: Path) -> None:
    pos = write_pair(tmp_path, neg=b"bad \x85 .\n", pos=b"good .\nodd \x8d byte .\n")

    result = read_examples(pos, ReadOptions(skip_bad_rows=True))

    assert len(result.examples) == 2
    assert len(result.bad_rows) == 1
    assert result.bad_rows[0].line == 2
    assert result.bad_rows[0].source == str(tmp_path / "reviews.pos")
    assert "0x8d" in result.bad_rows[0].reason


def test_invalid_utf8_after_bom_is_bad_row(tmp_path: Path) -> None:
    pos = write_pair(tmp_path, neg=b"\xef\xbb\xbfbad .\n\xff\n", pos=b"good .\n")

    with pytest.raises(
        DataError, match=r"reviews\.neg line 2: byte 0xff is invalid in UTF-8"
    ):
        read_examples(pos)


def test_empty_line_is_bad_row(tmp_path: Path) -> None:
    pos = write_pair(tmp_path, neg=b"bad .\n\nworse .\n", pos=b"good .\n")

    with pytest.raises(DataError) as excinfo:
        read_examples(pos)

    assert "reviews.neg line 2: empty review" in str(excinfo.value)


def test_whitespace_line_is_bad_row(tmp_path: Path) -> None:
    pos = write_pair(tmp_path, neg=b"bad .\n", pos=b"good .\n \t \r\nfine .\n")

    result = read_examples(pos, ReadOptions(skip_bad_rows=True))

    assert [row.line for row in result.bad_rows] == [2]
    assert result.bad_rows[0].reason == "empty review"
    assert len(result.examples) == 3


def test_final_newline_is_not_a_row(tmp_path: Path) -> None:
    pos = write_pair(tmp_path, neg=b"bad .\n", pos=b"good .\nfine .")

    result = read_examples(pos)

    assert len(result.examples) == 3
    assert result.bad_rows == []


@pytest.mark.parametrize("path_form", ["reviews.pos", "reviews.neg", "reviews", "."])
def test_pair_path_forms(tmp_path: Path, path_form: str) -> None:
    write_pair(tmp_path, neg=b"bad .\n", pos=b"good .\n")

    result = read_examples(tmp_path / path_form)

    assert [example.label for example in result.examples] == [0, 1]
    assert result.files == [tmp_path / "reviews.neg", tmp_path / "reviews.pos"]


def test_pair_missing_partner(tmp_path: Path) -> None:
    (tmp_path / "reviews.pos").write_bytes(b"good .\n")

    with pytest.raises(DataError, match=r"reviews\.neg was not found"):
        read_examples(tmp_path / "reviews.pos")


def test_pair_folder_ambiguous(tmp_path: Path) -> None:
    write_pair(tmp_path, neg=b"bad .\n", pos=b"good .\n", stem="a")
    write_pair(tmp_path, neg=b"bad .\n", pos=b"good .\n", stem="b")

    with pytest.raises(DataError, match="expected exactly one"):
        read_examples(tmp_path)


def test_pair_rejects_column_options(tmp_path: Path) -> None:
    pos = write_pair(tmp_path, neg=b"bad .\n", pos=b"good .\n")

    with pytest.raises(DataError, match="--stars only applies to CSV"):
        read_examples(pos, ReadOptions(stars=True))


def test_skipped_rows_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    lines = b"".join(b"\n" for _ in range(7)) + b"good .\n"
    pos = write_pair(tmp_path, neg=b"bad .\n", pos=lines)

    with caplog.at_level(logging.WARNING, logger="sentiment_lstm.data"):
        result = read_examples(pos, ReadOptions(skip_bad_rows=True))

    assert len(result.bad_rows) == 7
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1
    assert "left out 7 bad rows" in warnings[0]
    assert "the first 5:" in warnings[0]
    assert "reviews.pos line 5: empty review" in warnings[0]
    assert "reviews.pos line 6" not in warnings[0]
    assert warnings[0].endswith("; -v lists the other 2")


def test_skipped_rows_beyond_first_at_debug(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lines = b"".join(b"\n" for _ in range(7)) + b"good .\n"
    pos = write_pair(tmp_path, neg=b"bad .\n", pos=lines)

    with caplog.at_level(logging.DEBUG, logger="sentiment_lstm.data"):
        read_examples(pos, ReadOptions(skip_bad_rows=True))

    messages = [record.getMessage() for record in caplog.records]
    (summary,) = [message for message in messages if "bad rows" in message]
    assert summary.endswith("; the others follow")
    assert [message for message in messages if "left out bad row" in message] == [
        f"left out bad row {pos} line {line}: empty review" for line in (6, 7)
    ]


def test_text_lines_for_prediction(tmp_path: Path) -> None:
    path = tmp_path / "input.txt"
    path.write_bytes(b"loved it\r\n\xef\xbf\xbd odd but fine\nhated it\n")

    result = read_texts(path)

    assert [example.text for example in result.examples] == [
        "loved it",
        "\ufffd odd but fine",
        "hated it",
    ]
    assert [example.label for example in result.examples] == [None, None, None]
    assert result.examples[2].line == 3


def test_text_lines_rejected_for_training(tmp_path: Path) -> None:
    path = tmp_path / "input.txt"
    path.write_text("loved it\n", encoding="utf-8")

    with pytest.raises(DataError, match="only be used for prediction"):
        read_examples(path)


def test_utf16_file_rejected(tmp_path: Path) -> None:
    path = tmp_path / "input.txt"
    path.write_text("loved it\n", encoding="utf-16")

    with pytest.raises(DataError, match="UTF-16"):
        read_texts(path)


def test_empty_pair_has_no_reviews(tmp_path: Path) -> None:
    pos = write_pair(tmp_path, neg=b"", pos=b"")

    with pytest.raises(DataError, match="no reviews found"):
        read_examples(pos)


def test_carriage_return_line_ends(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pos = write_pair(
        tmp_path,
        neg=b"bad .\nworse .\n",
        pos="good \u0085 fun .\rgreat \u2028 cast .\rfine .\r".encode("utf-8"),
    )

    with caplog.at_level(logging.INFO, logger="sentiment_lstm.data"):
        result = read_examples(pos)

    positives = [example for example in result.examples if example.label == 1]
    assert [example.text for example in positives] == [
        "good \u0085 fun .",
        "great \u2028 cast .",
        "fine .",
    ]
    assert [example.line for example in positives] == [1, 2, 3]
    assert "lines are split at \\r" in caplog.text


def test_carriage_return_kept_with_line_feeds(tmp_path: Path) -> None:
    pos = write_pair(tmp_path, neg=b"bad .\n", pos=b"good \r fun .\nfine .\n")

    result = read_examples(pos)

    assert [example.text for example in result.examples] == [
        "bad .",
        "good \r fun .",
        "fine .",
    ]


def test_carriage_return_text_lines(tmp_path: Path) -> None:
    path = tmp_path / "input.txt"
    path.write_bytes(b"loved it\rhated it")

    result = read_texts(path)

    assert [example.text for example in result.examples] == ["loved it", "hated it"]


@pytest.mark.parametrize("ending", [b"\n", b"\n\n", b"\n \n\t\n", b"\r\n\r\n"])
def test_blank_lines_at_end_ignored(tmp_path: Path, ending: bytes) -> None:
    pos = write_pair(tmp_path, neg=b"bad .\n" + ending, pos=b"good .\nfine ." + ending)

    result = read_examples(pos)

    assert [example.text for example in result.examples] == [
        "bad .",
        "good .",
        "fine .",
    ]
    assert result.bad_rows == []


def test_blank_line_before_last_review_is_bad(tmp_path: Path) -> None:
    pos = write_pair(tmp_path, neg=b"bad .\n\nworse .\n\n", pos=b"good .\n")

    result = read_examples(pos, ReadOptions(skip_bad_rows=True))

    assert [(row.line, row.reason) for row in result.bad_rows] == [(2, "empty review")]


def test_blank_lines_between_reviews_numbered(tmp_path: Path) -> None:
    pos = write_pair(tmp_path, neg=b"bad .\n\n \n\nworse .\n\n", pos=b"good .\n")

    result = read_examples(pos, ReadOptions(skip_bad_rows=True))

    assert [row.line for row in result.bad_rows] == [2, 3, 4]


@pytest.mark.parametrize("line_end", [b"\n", b"\r\n", b"\r"])
def test_lines_over_review_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, line_end: bytes
) -> None:
    # A line over the limit is skipped in parts, and the lines after it keep
    # their numbers. With a limit of 10: lines of 10, 11, 12 and 30 letters.
    from sentiment_lstm.data import line_files

    monkeypatch.setattr(line_files, "MAX_REVIEW_CHARS", 10)
    lines = [b"a" * 10, b"b" * 11, b"c" * 12, b"ok", b"d" * 30, b"fine", b"e" * 11]
    pos = write_pair(tmp_path, neg=b"bad\n", pos=line_end.join(lines))

    result = read_texts(pos, ReadOptions(keep_unscored=True))

    assert [row.line for row in result.unscored] == [2, 3, 5, 7]
    assert all(
        row.reason.startswith("the review is longer than") for row in result.unscored
    )
    assert [(example.line, example.text) for example in result.examples] == [
        (1, "bad"),
        (1, "a" * 10),
        (4, "ok"),
        (6, "fine"),
    ]


def test_long_whitespace_line_at_end_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sentiment_lstm.data import line_files

    monkeypatch.setattr(line_files, "MAX_REVIEW_CHARS", 10)
    pos = write_pair(tmp_path, neg=b"bad\n", pos=b"good\n" + b" " * 30 + b"\n \t\n")

    result = read_examples(pos)

    assert [example.text for example in result.examples] == ["bad", "good"]
    assert result.bad_rows == []


def test_pair_of_one_file_rejected(tmp_path: Path) -> None:
    (tmp_path / "x.pos").write_bytes(b"good .\n")
    (tmp_path / "x.neg").symlink_to("x.pos")

    with pytest.raises(DataError, match="are the same file") as error:
        read_examples(tmp_path / "x.pos")

    assert "would be both negative and positive" in str(error.value)


def test_partner_in_two_letter_cases_named(tmp_path: Path) -> None:
    (tmp_path / "x.pos").write_bytes(b"good .\n")
    (tmp_path / "x.Neg").write_bytes(b"bad .\n")
    (tmp_path / "x.NEG").write_bytes(b"worse .\n")

    with pytest.raises(DataError, match="ambiguous: x.NEG and x.Neg differ only"):
        read_examples(tmp_path / "x.pos")


def test_upper_case_suffixes(tmp_path: Path) -> None:
    (tmp_path / "UP.NEG").write_bytes(b"bad .\n")
    (tmp_path / "UP.POS").write_bytes(b"good .\n")

    for path_form in ("UP.POS", "UP.NEG", "UP", "."):
        result = read_examples(tmp_path / path_form)

        assert [example.label for example in result.examples] == [0, 1]
        assert result.files == [tmp_path / "UP.NEG", tmp_path / "UP.POS"]


def test_mixed_case_suffixes(tmp_path: Path) -> None:
    (tmp_path / "r.neg").write_bytes(b"bad .\n")
    (tmp_path / "r.Pos").write_bytes(b"good .\n")

    result = read_examples(tmp_path / "r.Pos")

    assert [Path(example.source).name for example in result.examples] == [
        "r.neg",
        "r.Pos",
    ]


def test_upper_case_pair_missing_partner(tmp_path: Path) -> None:
    (tmp_path / "UP.POS").write_bytes(b"good .\n")

    with pytest.raises(DataError) as excinfo:
        read_examples(tmp_path / "UP.POS")

    message = str(excinfo.value)
    assert "needs both UP.POS and UP.NEG" in message
    assert f"{tmp_path / 'UP.NEG'} was not found" in message


def test_pair_folder_ignores_subfolders(tmp_path: Path) -> None:
    (tmp_path / "x.pos").mkdir()
    (tmp_path / "x.neg").mkdir()

    with pytest.raises(DataError, match="cannot detect the data format"):
        read_examples(tmp_path)
    with pytest.raises(DataError, match="found: none"):
        read_examples(tmp_path, ReadOptions(format="posneg"))


def test_long_line_unscored(tmp_path: Path, monkeypatch) -> None:
    from sentiment_lstm.text import TOO_LONG_REASON

    monkeypatch.setattr("sentiment_lstm.data.line_files.MAX_REVIEW_CHARS", 20)
    path = write_pair(tmp_path, b"awful\n" + b"x " * 20 + b"\n", b"good fun\n")

    result = read_texts(path, ReadOptions(keep_unscored=True))

    assert [example.text for example in result.examples] == ["awful", "good fun"]
    assert [(row.line, row.reason) for row in result.unscored] == [(2, TOO_LONG_REASON)]
