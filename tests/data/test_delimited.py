"""Tests for CSV and TSV files: quoting, line numbers, columns and labels."""

import logging
import re
from pathlib import Path

import pytest

from sentiment_lstm.data import (
    DataError,
    ReadOptions,
    StarRule,
    read_examples,
    read_texts,
)

QUOTED_CSV = (
    "review,sentiment\n"
    '"Great, really great",positive\n'
    '"She said ""wow"" twice",pos\n'
    '"First line\nsecond line\r\nthird line",negative\n'
    "plain and simple,neg\n"
    "bad label here,meh\n"
)


def write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8"))
    return path


def test_csv_quoting(tmp_path: Path) -> None:
    path = write(tmp_path / "reviews.csv", QUOTED_CSV)

    result = read_examples(path, ReadOptions(skip_bad_rows=True))
    texts = [example.text for example in result.examples]

    assert texts[0] == "Great, really great"
    assert texts[1] == 'She said "wow" twice'
    assert texts[2] == "First line\nsecond line\r\nthird line"
    assert [example.label for example in result.examples] == [1, 1, 0, 0]


def test_csv_record_start_lines(tmp_path: Path) -> None:
    path = write(tmp_path / "reviews.csv", QUOTED_CSV)

    result = read_examples(path, ReadOptions(skip_bad_rows=True))

    assert [example.line for example in result.examples] == [2, 3, 4, 7]
    assert result.bad_rows[0].line == 8


def test_csv_unknown_label_message(tmp_path: Path) -> None:
    path = write(tmp_path / "reviews.csv", QUOTED_CSV)

    with pytest.raises(DataError) as excinfo:
        read_examples(path)

    assert str(excinfo.value) == (
        f"{path} line 8: unknown label 'meh'; allowed: positive, negative, pos, "
        "neg, true, false (in any case), 0, 1, and in JSONL the booleans true "
        "and false; use --stars for ratings, or --skip-bad-rows to leave such "
        "rows out"
    )


def test_csv_relative_path_in_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "reviews.csv", QUOTED_CSV)
    monkeypatch.chdir(tmp_path)

    with pytest.raises(DataError, match=r"^reviews\.csv line 8: unknown label 'meh'"):
        read_examples("reviews.csv")


@pytest.mark.parametrize(
    "name, separator, expected",
    [
        (
            "semi.csv",
            ";",
            "separated by semicolons, not commas; save it with commas between the fields",
        ),
        (
            "bars.tsv",
            "|",
            "separated by vertical bars, not tabs; save it with tabs between the fields",
        ),
        (
            "tabs.csv",
            "\t",
            "separated by tabs, not commas; pass --data-format tsv",
        ),
        (
            "commas.tsv",
            ",",
            "separated by commas, not tabs; pass --data-format csv",
        ),
    ],
)
def test_other_separator_named(
    tmp_path: Path, name: str, separator: str, expected: str
) -> None:
    rows = ["text", "label"], ["great film", "positive"], ["dull film", "negative"]
    path = write(tmp_path / name, "".join(separator.join(row) + "\n" for row in rows))

    with pytest.raises(DataError) as raised:
        read_examples(path)

    message = str(raised.value)
    header = f"text{separator}label"
    assert message.startswith(f"{path}: the header is one column, {header!r}, ")
    assert message.endswith(expected)


@pytest.mark.parametrize("name", ["reviews.csv", "reviews.tsv"])
@pytest.mark.parametrize(
    "first", ['{"text": "great film", "label": 1}', ' {"text": "great film"} ']
)
def test_json_lines_under_another_name(tmp_path: Path, name: str, first: str) -> None:
    path = write(tmp_path / name, first + '\n{"text": "dull film", "label": 0}\n')

    with pytest.raises(DataError) as raised:
        read_examples(path)

    assert str(raised.value) == (
        f"{path} line 1: the header row looks like a JSON object, so the file "
        "seems to be JSON Lines; pass --data-format jsonl, or rename it to .jsonl"
    )


@pytest.mark.parametrize("skip", [False, True])
def test_ratings_read_as_labels_stop(tmp_path: Path, skip: bool) -> None:
    # Skipping the rows of 2 to 5 stars would keep the 1-star reviews as
    # positive labels.
    text = "content,score\nawful app,1\ngreat app,5\nbroken,0\nfine,4\n"
    path = write(tmp_path / "reviews.csv", text)

    with pytest.raises(DataError) as raised:
        read_examples(path, ReadOptions(skip_bad_rows=skip))

    assert str(raised.value) == (
        f"{path} line 3: unknown label '5' in column 'score', which looks like a "
        "column of star ratings, so its 1s would be read as positive labels; "
        "pass --stars to read it as ratings, or --label-column with a column of "
        "labels"
    )


def test_other_unknown_labels_skipped(tmp_path: Path) -> None:
    # A 2 in a column named otherwise may be a third class, such as neutral.
    text = "text,label\ngreat,positive\nso-so,neutral\nbad,-1\nmeh,2\nworse,0\n"
    path = write(tmp_path / "reviews.csv", text)

    result = read_examples(path, ReadOptions(skip_bad_rows=True))

    assert [example.label for example in result.examples] == [1, 0]
    assert [row.line for row in result.bad_rows] == [3, 4, 5]


def test_stars_prefer_rating_column(tmp_path: Path) -> None:
    # Without --stars "sentiment" comes first; with it, the ratings do.
    text = "review,sentiment,rating\ngreat app,positive,2\nawful,negative,5\n"
    path = write(tmp_path / "reviews.csv", text)

    with_stars = read_examples(path, ReadOptions(stars=True))
    without = read_examples(path)

    assert with_stars.columns == {"text": "review", "label": "rating"}
    assert [example.label for example in with_stars.examples] == [0, 1]
    assert without.columns == {"text": "review", "label": "sentiment"}
    assert [example.label for example in without.examples] == [1, 0]


def test_tsv_file(tmp_path: Path) -> None:
    text = 'text\tlabel\nfine, with a comma\t1\n"tab\tinside"\t0\nno quote " here\t1\n'
    path = write(tmp_path / "reviews.tsv", text)

    result = read_examples(path)

    assert [example.text for example in result.examples] == [
        "fine, with a comma",
        "tab\tinside",
        'no quote " here',
    ]
    assert [example.label for example in result.examples] == [1, 0, 1]


def test_tab_extension_is_tsv(tmp_path: Path) -> None:
    path = write(tmp_path / "reviews.tab", "text\tlabel\ngood\tpositive\n")

    result = read_examples(path)

    assert result.examples[0].label == 1


@pytest.mark.parametrize(
    ("cell", "label"),
    [
        ("positive", 1),
        ("Negative", 0),
        (" POS ", 1),
        ("neg", 0),
        ("1", 1),
        ("0", 0),
        ("1.0", 1),
        ("0.0", 0),
    ],
)
def test_label_cells(tmp_path: Path, cell: str, label: int) -> None:
    path = write(tmp_path / "reviews.csv", f"text,label\nsome review,{cell}\n")

    result = read_examples(path)

    assert result.examples[0].label == label


@pytest.mark.parametrize("cell", ["2", "-1", "yes", "0.5", "positive!"])
def test_label_cells_rejected(tmp_path: Path, cell: str) -> None:
    path = write(tmp_path / "reviews.csv", f"text,label\nsome review,{cell}\n")

    with pytest.raises(DataError, match=f"line 2: unknown label '{cell}'"):
        read_examples(path)


def test_missing_label_cell(tmp_path: Path) -> None:
    path = write(tmp_path / "reviews.csv", "text,label\nsome review,\n")

    with pytest.raises(DataError, match="line 2: missing label in field 'label'"):
        read_examples(path)


def test_missing_label_cell_for_prediction(tmp_path: Path) -> None:
    path = write(tmp_path / "reviews.csv", "text,label\nsome review,\nother,1\n")

    result = read_texts(path)

    assert [example.label for example in result.examples] == [None, 1]


def test_unusable_labels_for_prediction(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path / "input.csv", "text,label\na,1\nb,meh\nc,neg\n")

    with caplog.at_level(logging.WARNING, logger="sentiment_lstm.data"):
        result = read_texts(path)

    assert [example.label for example in result.examples] == [1, None, 0]
    assert result.bad_rows == []
    assert "read 1 rows of" in caplog.text
    assert "line 3: unknown label 'meh'" in caplog.text


def test_middle_stars_kept_for_prediction(tmp_path: Path) -> None:
    path = write(tmp_path / "input.csv", "text,stars\na,1\nb,3\nc,x\nd,5\n")

    result = read_texts(path, ReadOptions(stars=True))

    assert [example.label for example in result.examples] == [0, None, None, 1]
    assert result.left_out_by_stars == 0


def test_stars_default_cutoffs(tmp_path: Path) -> None:
    rows = "".join(f"review {stars},{stars}\n" for stars in [1, 2, 2.5, 3, 3.9, 4, 5])
    path = write(tmp_path / "reviews.csv", "content,score\n" + rows)

    result = read_examples(path, ReadOptions(stars=True))

    assert [example.label for example in result.examples] == [0, 0, 1, 1]
    assert result.left_out_by_stars == 3
    assert [example.line for example in result.examples] == [2, 3, 7, 8]


def test_stars_custom_cutoffs(tmp_path: Path) -> None:
    rows = "".join(f"review {stars},{stars}\n" for stars in range(1, 11))
    path = write(tmp_path / "reviews.csv", "content,rating\n" + rows)
    options = ReadOptions(
        stars=True, star_rule=StarRule(negative_max=4, positive_min=7)
    )

    result = read_examples(path, options)

    assert [example.label for example in result.examples] == [0] * 4 + [1] * 4
    assert result.left_out_by_stars == 2


def test_stars_left_out_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path / "reviews.csv", "text,stars\na,1\nb,3\nc,3\nd,5\n")

    with caplog.at_level(logging.INFO, logger="sentiment_lstm.data"):
        read_examples(path, ReadOptions(stars=True))

    messages = [record.getMessage() for record in caplog.records]
    assert any("left out 2 rows" in message for message in messages)


def test_stars_non_numeric_rating(tmp_path: Path) -> None:
    path = write(tmp_path / "reviews.csv", "text,stars\na,1\nb,five\nc,5\n")

    with pytest.raises(DataError, match="line 3: invalid rating 'five'"):
        read_examples(path, ReadOptions(stars=True))


def test_star_rule_order_checked() -> None:
    with pytest.raises(DataError, match="--negative-max-stars below"):
        StarRule(negative_max=4, positive_min=4)


def test_missing_text_column(tmp_path: Path) -> None:
    path = write(tmp_path / "reviews.csv", "title,label\nsome review,1\n")

    with pytest.raises(DataError) as excinfo:
        read_examples(path)

    message = str(excinfo.value)
    assert "no text column found" in message
    assert "the header has columns: 'title', 'label'" in message
    assert "pass --text-column" in message


def test_headerless_file_hint(tmp_path: Path) -> None:
    path = write(tmp_path / "reviews.csv", "a gorgeous film\na dull mess\n")

    with pytest.raises(DataError) as excinfo:
        read_texts(path)

    message = str(excinfo.value)
    assert "the header has columns: 'a gorgeous film'" in message
    assert "if line 1 is a review rather than column names, add a header" in message


@pytest.mark.parametrize("first_line", ["", "   ", ","])
def test_empty_header_row(tmp_path: Path, first_line: str) -> None:
    path = write(tmp_path / "reviews.csv", f"{first_line}\ntext,label\nfun,pos\n")

    with pytest.raises(DataError) as excinfo:
        read_texts(path)

    message = str(excinfo.value)
    assert f"{path} line 1: the header row is empty" in message
    assert "remove the empty lines above it" in message


def test_named_text_column_no_header_hint(tmp_path: Path) -> None:
    path = write(tmp_path / "reviews.csv", "title,label\nsome review,1\n")

    with pytest.raises(DataError) as excinfo:
        read_examples(path, ReadOptions(text_column="body"))

    assert "add a header" not in str(excinfo.value)


def test_missing_named_label_column(tmp_path: Path) -> None:
    path = write(tmp_path / "reviews.csv", "text,label\nsome review,1\n")

    with pytest.raises(DataError) as excinfo:
        read_examples(path, ReadOptions(label_column="verdict"))

    message = str(excinfo.value)
    assert "label column 'verdict' not found" in message
    assert "'text', 'label'" in message
    assert "pass --label-column" in message


def test_no_label_column_for_training(tmp_path: Path) -> None:
    path = write(tmp_path / "reviews.csv", "text,date\nsome review,2024\n")

    with pytest.raises(DataError, match="no label column found"):
        read_examples(path)


def test_text_column_only_for_training(tmp_path: Path) -> None:
    path = write(tmp_path / "reviews.csv", "review\nsome review\n")

    with pytest.raises(DataError) as excinfo:
        read_examples(path)

    message = str(excinfo.value)
    assert "the header has columns 'review' alone, the text column" in message
    assert "score unlabelled reviews with 'sentiment-lstm predict'" in message
    assert "pass --label-column" not in message


def test_no_label_column_for_prediction(tmp_path: Path) -> None:
    path = write(tmp_path / "reviews.csv", "text,date\nsome review,2024\n")

    result = read_texts(path)

    assert result.examples[0].label is None


def test_named_columns_ignore_case(tmp_path: Path) -> None:
    path = write(tmp_path / "reviews.csv", "Body,Verdict\nsome review,pos\n")

    result = read_examples(path, ReadOptions(label_column="verdict"))

    assert result.examples[0].text == "some review"
    assert result.examples[0].label == 1


def test_bom_header_detected(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    path.write_bytes(b"\xef\xbb\xbftext,label\nsome review,1\n")

    result = read_examples(path)

    assert result.examples[0].text == "some review"


def test_wrong_field_count(tmp_path: Path) -> None:
    path = write(tmp_path / "reviews.csv", "text,label\na,1\nb,1,extra\nc,0\n")

    with pytest.raises(
        DataError, match="line 3: expected 2 fields as in the header, found 3"
    ):
        read_examples(path)


def test_empty_text(tmp_path: Path) -> None:
    path = write(tmp_path / "reviews.csv", 'text,label\na,1\n"  ",0\n')

    with pytest.raises(DataError, match="line 3: empty review"):
        read_examples(path)


def test_blank_line_is_bad_row(tmp_path: Path) -> None:
    path = write(tmp_path / "reviews.csv", "text,label\na,1\n\nb,0\n")

    result = read_examples(path, ReadOptions(skip_bad_rows=True))

    assert [row.line for row in result.bad_rows] == [3]
    assert [example.line for example in result.examples] == [2, 4]


def test_undefined_byte_in_cp1252_csv(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    path.write_bytes(b'text,label\ncaf\xe9 ok,1\n"multi\nline \x90",0\n')

    with pytest.raises(DataError, match="line 3: byte 0x90 is invalid in cp1252"):
        read_examples(path)


def test_skip_bad_rows_counts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    text = "text,label\na,1\n,1\nb,meh\nc,0\nd\n"
    path = write(tmp_path / "reviews.csv", text)

    with caplog.at_level(logging.WARNING, logger="sentiment_lstm.data"):
        result = read_examples(path, ReadOptions(skip_bad_rows=True))

    assert len(result.examples) == 2
    assert [row.line for row in result.bad_rows] == [3, 4, 6]
    assert result.bad_rows[1].reason == "unknown label 'meh'"
    assert "left out 3 bad rows" in caplog.text


def test_text_after_closing_quote(tmp_path: Path) -> None:
    path = write(
        tmp_path / "reviews.tsv",
        'review\tlabel\n"the best" movie ever\tpos\nfine\tneg\n',
    )

    with pytest.raises(DataError) as excinfo:
        read_examples(path)
    message = str(excinfo.value)
    # The tab is shown as \t, since a raw one would be invisible.
    assert "line 2: invalid record: '\\t' expected" in message
    assert "\t" not in message
    assert "TSV files are read with CSV quoting" in message
    result = read_examples(path, ReadOptions(skip_bad_rows=True))
    assert [example.text for example in result.examples] == ["fine"]


def test_unclosed_quote_names_where_record_fails(tmp_path: Path) -> None:
    rows = [f"review {i},pos" for i in range(1, 40)]
    rows[9] = '"opens a quote,pos'
    rows[29] = '"closed" here,neg'
    path = write(tmp_path / "reviews.csv", "review,label\n" + "\n".join(rows) + "\n")

    with pytest.raises(DataError) as excinfo:
        read_examples(path)
    result = read_examples(path, ReadOptions(skip_bad_rows=True))

    assert str(excinfo.value) == (
        f"{path} line 11: a quote opened on this line runs on to line 31, where "
        "the record does not parse: ',' expected after '\"'; close the quote or, "
        "if it is part of the text, put the field in double quotes and double "
        'the quotes inside ("" for "), or use --skip-bad-rows to leave such rows '
        "out"
    )
    # Line 11 is left out alone, and line 31 fails on its own line.
    assert [(row.line, row.lines) for row in result.bad_rows] == [(11, 1), (31, 1)]
    assert result.bad_rows[1].reason == "invalid record: ',' expected after '\"'"
    assert len(result.examples) == 39 - 2
    assert [example.line for example in result.examples][9:12] == [12, 13, 14]


def test_unclosed_quote_at_end_of_file(tmp_path: Path) -> None:
    path = write(tmp_path / "reviews.csv", 'review,label\ngood,pos\n"bad,neg\n')

    with pytest.raises(DataError, match="line 3: invalid record: unexpected end"):
        read_examples(path)


def test_field_over_csv_default_limit(tmp_path: Path) -> None:
    review = "great fun " * 20_000
    path = write(tmp_path / "reviews.csv", f'review,label\n"{review}",pos\n')

    result = read_examples(path)

    assert result.examples[0].text == review.strip()


def test_empty_csv_file(tmp_path: Path) -> None:
    path = write(tmp_path / "reviews.csv", "")

    with pytest.raises(DataError, match="the file is empty"):
        read_examples(path)


def test_unknown_extension(tmp_path: Path) -> None:
    path = write(tmp_path / "reviews.xlsx", "text,label\n")

    with pytest.raises(DataError, match="pass --data-format"):
        read_examples(path)


def test_explicit_format_overrides_extension(tmp_path: Path) -> None:
    path = write(tmp_path / "reviews.dat", "text,label\nsome review,1\n")

    result = read_examples(path, ReadOptions(format="csv"))

    assert result.examples[0].label == 1


@pytest.mark.parametrize(
    ("header", "role", "name", "positions"),
    [
        ("text,label,text", "text", "text", "1 and 3"),
        ("text,label,label", "label", "label", "2 and 3"),
        ("review,text,stars,text,text", "text", "text", "2, 4 and 5"),
    ],
)
def test_duplicate_column_rejected(
    tmp_path: Path, header: str, role: str, name: str, positions: str
) -> None:
    width = header.count(",") + 1
    path = write(tmp_path / "reviews.csv", f"{header}\n" + ",".join(["1"] * width))

    with pytest.raises(DataError) as excinfo:
        read_examples(path)

    message = str(excinfo.value)
    assert f"the {role} column {name!r} is ambiguous" in message
    assert f"at positions {positions}" in message
    assert f"--{role}-column" in message


@pytest.mark.parametrize(
    ("header", "options"),
    [
        ("text,label,label", ReadOptions(require_labels=False)),
        ("text,Label,LABEL", ReadOptions(require_labels=False)),
        ("label,other", ReadOptions(require_labels=False, text_column="label")),
    ],
)
def test_prediction_input_leaves_out_unclear_label(
    tmp_path: Path, header: str, options: ReadOptions
) -> None:
    width = header.count(",") + 1
    path = write(
        tmp_path / "reviews.csv", f"{header}\n" + ",".join(["good"] * width) + "\n"
    )

    result = read_examples(path, options)

    assert [example.text for example in result.examples] == ["good"]
    assert result.examples[0].label is None


def test_named_duplicate_column_rejected(tmp_path: Path) -> None:
    path = write(tmp_path / "reviews.csv", "body,label,body\ngood,1,bad\n")

    with pytest.raises(DataError, match="'body' is ambiguous.*positions 1 and 3"):
        read_examples(path, ReadOptions(text_column="body"))


def test_exact_case_column_wins(tmp_path: Path) -> None:
    path = write(tmp_path / "reviews.csv", "Text,text,label\nwrong,right,1\n")

    result = read_examples(path)

    assert result.examples[0].text == "right"


def test_column_matching_two_ignoring_case(tmp_path: Path) -> None:
    path = write(tmp_path / "reviews.csv", "Text,text,label\nwrong,right,1\n")

    with pytest.raises(DataError) as excinfo:
        read_examples(path, ReadOptions(text_column="TEXT"))

    message = str(excinfo.value)
    assert "the text column 'TEXT' is ambiguous: 2 columns match it" in message
    assert "'Text' at position 1 and 'text' at position 2" in message
    assert "not found" not in message


def test_detected_column_matching_two_ignoring_case(tmp_path: Path) -> None:
    path = write(tmp_path / "reviews.csv", "Review,REVIEW,label\na,b,1\n")

    with pytest.raises(DataError, match="the text column 'review' is ambiguous"):
        read_examples(path)


def test_unused_duplicate_column_allowed(tmp_path: Path) -> None:
    path = write(tmp_path / "reviews.csv", "id,text,id,label\n1,good,2,1\n")

    result = read_examples(path)

    assert result.examples[0].text == "good"


@pytest.mark.parametrize("ending", ["\n", "\n\n\n", "\r\n\r\n", "   \n", "\n \n\n"])
@pytest.mark.parametrize("delimiter", [",", "\t"])
def test_blank_lines_at_end_ignored(
    tmp_path: Path, ending: str, delimiter: str
) -> None:
    suffix = "csv" if delimiter == "," else "tsv"
    text = f"text{delimiter}label\na{delimiter}1\nb{delimiter}0\n"
    path = write(tmp_path / f"reviews.{suffix}", text + ending)

    result = read_examples(path)

    assert [example.text for example in result.examples] == ["a", "b"]
    assert result.bad_rows == []


def test_line_of_spaces_between_records_is_empty_line(tmp_path: Path) -> None:
    path = write(tmp_path / "reviews.csv", "text,label\na,1\n   \nb,0\n")

    result = read_examples(path, ReadOptions(skip_bad_rows=True))

    assert [example.text for example in result.examples] == ["a", "b"]
    assert [(row.line, row.reason) for row in result.bad_rows] == [(3, "empty line")]


def test_blank_line_before_bad_record_reported_first(tmp_path: Path) -> None:
    path = write(tmp_path / "reviews.csv", 'text,label\na,1\n\n"open,0\n\n')

    result = read_examples(path, ReadOptions(skip_bad_rows=True))

    assert [(row.line, row.reason[:22]) for row in result.bad_rows] == [
        (3, "empty line"),
        (4, "a quote opened on this"),
    ]


def test_star_range_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path / "reviews.csv", "text,stars\na,1\nb,2\nc,5\nd,4.5\n")

    with caplog.at_level(logging.INFO, logger="sentiment_lstm.data"):
        read_examples(path, ReadOptions(stars=True))

    assert f"star ratings in {path} range from 1 to 5" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_ratings_above_five_stars_warned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = "".join(f"review {stars},{stars}\n" for stars in range(1, 11))
    path = write(tmp_path / "reviews.csv", "content,rating\n" + rows)

    with caplog.at_level(logging.INFO, logger="sentiment_lstm.data"):
        read_examples(path, ReadOptions(stars=True))

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert f"5 ratings in {path} are above 5 stars (the highest is 10)" in warnings[0]
    assert "(negative up to 2, positive from 4)" in warnings[0]
    assert "--negative-max-stars and --positive-min-stars" in warnings[0]
    assert "range from 1 to 10" in caplog.text


def test_ten_star_cutoffs_not_warned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = "".join(f"review {stars},{stars}\n" for stars in range(1, 11))
    path = write(tmp_path / "reviews.csv", "content,rating\n" + rows)
    options = ReadOptions(
        stars=True, star_rule=StarRule(negative_max=4, positive_min=7)
    )

    with caplog.at_level(logging.WARNING, logger="sentiment_lstm.data"):
        read_examples(path, options)

    assert caplog.records == []


def test_negative_ratings_warned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path / "reviews.csv", "text,stars\na,-1\nb,0\nc,5\nd,-5\n")

    with caplog.at_level(logging.WARNING, logger="sentiment_lstm.data"):
        result = read_examples(path, ReadOptions(stars=True))

    assert [example.label for example in result.examples] == [0, 0, 1, 0]
    assert "2 ratings in" in caplog.text
    assert "below 0 stars (the lowest is -5)" in caplog.text


@pytest.mark.parametrize(
    ("labels", "fix", "rule"),
    [
        (
            ("-1", "1"),
            "for labels -1 and 1 use --stars --negative-max-stars -1 "
            "--positive-min-stars 1, or --skip-bad-rows",
            StarRule(-1, 1),
        ),
        (
            ("1", "2"),
            "for labels 1 (negative) and 2 (positive) use --stars "
            "--negative-max-stars 1 --positive-min-stars 2, and for star ratings "
            "--stars, or --skip-bad-rows",
            StarRule(1, 2),
        ),
    ],
)
def test_other_label_numbering_names_fix(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    labels: tuple[str, str],
    fix: str,
    rule: StarRule,
) -> None:
    negative, positive = labels
    path = write(
        tmp_path / "reviews.csv",
        f"text,polarity\ngood,{positive}\nbad,{negative}\nfine,{positive}\n",
    )

    with pytest.raises(DataError) as excinfo:
        read_examples(path)
    with caplog.at_level(logging.WARNING, logger="sentiment_lstm.data"):
        # The fix that the message names reads the file.
        result = read_examples(path, ReadOptions(stars=True, star_rule=rule))

    assert fix in str(excinfo.value)
    assert [example.label for example in result.examples] == [1, 0, 1]
    assert caplog.records == []


def test_ratings_of_prediction_input_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path / "reviews.csv", "text,stars\na,1\nb,7\n")

    with caplog.at_level(logging.INFO, logger="sentiment_lstm.data"):
        read_texts(path, ReadOptions(stars=True))

    assert "range from 1 to 7" in caplog.text
    assert f"1 rating in {path} is above 5 stars" in caplog.text


def test_unclosed_quote_leaves_out_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [f"review {i},pos" for i in range(1, 41)]
    rows[11] = '"opens a quote,pos'
    path = write(tmp_path / "reviews.csv", "review,label\n" + "\n".join(rows) + "\n")

    with caplog.at_level(logging.WARNING, logger="sentiment_lstm.data"):
        result = read_examples(path, ReadOptions(skip_bad_rows=True))

    assert len(result.examples) == 39
    assert [example.line for example in result.examples][11:13] == [14, 15]
    assert result.examples[-1].text == "review 40"
    assert [(row.line, row.lines) for row in result.bad_rows] == [(13, 1)]
    assert result.bad_lines == 1
    assert "spanning" not in caplog.text
    assert (
        f"left out 1 bad row of {path}: {path} line 13: a quote opened on this "
        "line never closes, so the record runs on to the end of the file at "
        "line 41"
    ) in caplog.text


# Rows of a file whose quote on line 5 is not closed on it. The record of
# line 5 fails on line 7, where the quote that opens a legit quoted field
# closes its field and text follows.
OPEN_QUOTE_ROWS = [
    "text{sep}label",
    '"first{end}quoted"{sep}pos',
    "caf\u00e9 film{sep}pos",
    '"broken quote, film{sep}neg',
    "great fun{sep}pos",
    '"second{end}quoted"{sep}neg',
    "awful plot{sep}neg",
]


@pytest.mark.parametrize(
    ("suffix", "end", "encoding", "final_break"),
    [
        (".csv", "\n", "utf-8", True),
        (".csv", "\r\n", "utf-8", True),
        (".csv", "\r", "utf-8", True),
        (".csv", "\n", "cp1252", True),
        (".csv", "\n", "utf-8", False),
        (".tsv", "\n", "utf-8", True),
        (".tsv", "\r\n", "cp1252", False),
    ],
)
def test_open_quote_keeps_later_records(
    tmp_path: Path, suffix: str, end: str, encoding: str, final_break: bool
) -> None:
    sep = "\t" if suffix == ".tsv" else ","
    text = end.join(OPEN_QUOTE_ROWS).format(sep=sep, end=end)
    path = tmp_path / f"reviews{suffix}"
    path.write_bytes((text + (end if final_break else "")).encode(encoding))

    result = read_examples(path, ReadOptions(skip_bad_rows=True))

    assert [example.text for example in result.examples] == [
        f"first{end}quoted",
        "caf\u00e9 film",
        "great fun",
        f"second{end}quoted",
        "awful plot",
    ]
    assert [example.line for example in result.examples] == [2, 4, 6, 7, 9]
    assert [example.label for example in result.examples] == [1, 1, 1, 0, 0]
    assert [(row.line, row.lines) for row in result.bad_rows] == [(5, 1)]
    assert result.bad_rows[0].reason == (
        "a quote opened on this line runs on to line 7, where the record does "
        f"not parse: {sep!r} expected after '\"'"
    )
    with pytest.raises(DataError, match=f"^{re.escape(str(path))} line 5: a quote"):
        read_examples(path)


def test_open_quote_tsv_fix_names_csv_quoting(tmp_path: Path) -> None:
    path = write(tmp_path / "reviews.tsv", 'text\tlabel\n"open\tpos\nfine\tneg\n')

    with pytest.raises(DataError) as excinfo:
        read_examples(path)

    assert str(excinfo.value) == (
        f"{path} line 2: a quote opened on this line never closes, so the "
        "record runs on to the end of the file at line 3; TSV files are read "
        "with CSV quoting, so close the quote or, if it is part of the text, "
        'put the field in double quotes and double the quotes inside ("" for '
        '"), or use --skip-bad-rows to leave such rows out'
    )


@pytest.mark.parametrize("final_break", [True, False])
def test_bad_rows_after_open_quote_reported(tmp_path: Path, final_break: bool) -> None:
    rows = [
        "text,label",
        "good,pos",
        '"open,neg',
        "fine,pos",
        "meh row,meh",
        'x,"y" z',
        "last,neg",
        '"never closed,pos',
        "after it,pos",
    ]
    text = "\n".join(rows) + ("\n" if final_break else "")
    path = write(tmp_path / "reviews.csv", text)

    result = read_examples(path, ReadOptions(skip_bad_rows=True))

    assert [example.text for example in result.examples] == [
        "good",
        "fine",
        "last",
        "after it",
    ]
    assert [example.line for example in result.examples] == [2, 4, 7, 9]
    assert [(row.line, row.lines) for row in result.bad_rows] == [
        (3, 1),
        (5, 1),
        (6, 1),
        (8, 1),
    ]
    assert [row.reason for row in result.bad_rows] == [
        "a quote opened on this line runs on to line 6, where the record does "
        "not parse: ',' expected after '\"'",
        "unknown label 'meh'",
        "invalid record: ',' expected after '\"'",
        "a quote opened on this line never closes, so the record runs on to "
        "the end of the file at line 9",
    ]


def test_open_quotes_in_a_row(tmp_path: Path) -> None:
    # The quote of line 2 closes on line 4, whose own quote never closes.
    path = write(
        tmp_path / "reviews.csv",
        'text,label\n"one,pos\ntwo,pos\n"three,neg\nfour,neg\n',
    )

    result = read_examples(path, ReadOptions(skip_bad_rows=True))

    assert [example.line for example in result.examples] == [3, 5]
    assert [(row.line, row.lines) for row in result.bad_rows] == [(2, 1), (4, 1)]


def test_open_quote_over_field_limit(tmp_path: Path) -> None:
    from sentiment_lstm.data.delimited import FIELD_SIZE_LIMIT

    line = "a" * 100_000 + ",1\n"
    count = FIELD_SIZE_LIMIT // len(line) + 2
    path = write(
        tmp_path / "reviews.csv",
        'text,label\ngood,1\n"open,0\n' + line * count + "last,0\n",
    )
    # The field starts after the quote of line 3 and contains the line breaks.
    field_chars, fails_on = len("open,0\n"), 3
    while field_chars <= FIELD_SIZE_LIMIT:
        fails_on += 1
        field_chars += len(line)

    result = read_examples(path, ReadOptions(skip_bad_rows=True))

    assert [(row.line, row.lines) for row in result.bad_rows] == [(3, 1)]
    assert result.bad_rows[0].reason == (
        f"a quote opened on this line is still open at line {fails_on}, after "
        "16,777,216 characters, the most a field may have"
    )
    assert len(result.examples) == count + 2
    assert [example.line for example in result.examples[:3]] == [2, 4, 5]
    assert result.examples[-1].line == count + 4
    assert result.examples[-1].text == "last"


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ('"a fine\nmulti-line\nreview",maybe', "unknown label 'maybe'"),
        ('"a fine\nmulti-line\nreview",', "missing label in field 'label'"),
        ('"\n\n ",pos', "empty review"),
    ],
)
def test_bad_multi_line_record_counts_its_lines(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, record: str, reason: str
) -> None:
    text = f"review,label\ngood,pos\n{record}\nbad,neg\n"
    path = write(tmp_path / "reviews.csv", text)

    with caplog.at_level(logging.WARNING, logger="sentiment_lstm.data"):
        result = read_examples(path, ReadOptions(skip_bad_rows=True))

    assert [example.text for example in result.examples] == ["good", "bad"]
    assert [(row.line, row.lines) for row in result.bad_rows] == [(3, 3)]
    assert result.bad_lines == 3
    assert "left out 1 bad row of" in caplog.text
    assert f"spanning 3 lines: {path} lines 3 to 5: {reason}" in caplog.text


def test_long_bad_row_after_first_five_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [f"review {i},pos" for i in range(1, 31)]
    for index in range(6):
        rows[index] = f"bad {index},meh"
    # A quote closed 9 lines later gives a record of 10 lines with a bad label.
    rows[20] = '"opens a quote,pos'
    rows[29] = 'closes it",meh'
    path = write(tmp_path / "reviews.csv", "review,label\n" + "\n".join(rows) + "\n")

    with caplog.at_level(logging.WARNING, logger="sentiment_lstm.data"):
        result = read_examples(path, ReadOptions(skip_bad_rows=True))

    assert len(result.bad_rows) == 7
    assert result.bad_lines == 6 + 10
    assert "left out 7 bad rows" in caplog.text
    assert "spanning 16 lines" in caplog.text
    assert "the longest: " in caplog.text
    assert "lines 22 to 31" in caplog.text


def test_field_over_size_limit_named(tmp_path: Path) -> None:
    from sentiment_lstm.data.delimited import FIELD_SIZE_LIMIT

    long_review = "a" * (FIELD_SIZE_LIMIT + 1)
    path = write(
        tmp_path / "reviews.csv", f'text,label\ngood,1\n"{long_review}",0\nbad,0\n'
    )

    result = read_examples(path, ReadOptions(skip_bad_rows=True))

    assert [example.text for example in result.examples] == ["good", "bad"]
    [bad] = result.bad_rows
    assert bad.line == 3
    assert bad.reason == (
        "a field is longer than 16,777,216 characters, the most any field, "
        "the review's included, may have"
    )
    with pytest.raises(DataError, match="line 3: .*; shorten the field or close"):
        read_examples(path)


@pytest.mark.parametrize(
    ("first_line", "value"),
    [
        ("a gripping film,1", "1"),
        ("a dull mess,negative", "negative"),
        ('"a dull, slow mess",2', "2"),
    ],
)
def test_headerless_csv_explained(tmp_path: Path, first_line: str, value: str) -> None:
    path = write(tmp_path / "reviews.csv", first_line + "\nanother film,0\n")

    with pytest.raises(DataError) as excinfo:
        read_examples(path)

    message = str(excinfo.value)
    assert message.startswith(f"{path}: no text column found")
    assert f"the header has the value {value!r}, so the file seems to have" in message
    assert "add a first line that names the columns, such as text,label" in message


def test_header_without_label_values_not_explained(tmp_path: Path) -> None:
    path = write(tmp_path / "reviews.csv", "title,verdict\nanother film,0\n")

    with pytest.raises(DataError) as excinfo:
        read_examples(path)

    assert "seems to have no header" not in str(excinfo.value)


def test_predict_output_header_not_explained(tmp_path: Path) -> None:
    path = write(
        tmp_path / "scores.csv",
        "comment_text,positive,negative,label\ngood film,0.9,0.1,positive\n",
    )

    with pytest.raises(DataError) as excinfo:
        read_texts(path)

    message = str(excinfo.value)
    assert "no text column found" in message
    assert "seems to have no header" not in message


def test_bare_carriage_return_fails_whole_record(tmp_path: Path) -> None:
    path = write(
        tmp_path / "reviews.csv",
        "text,label\ngood\rfilm,positive\n1,2\rdull,negative\nfine film,positive\n",
    )

    with pytest.raises(DataError, match=r"line 2: a carriage return \("):
        read_examples(path)
    result = read_examples(path, ReadOptions(skip_bad_rows=True))

    assert [example.text for example in result.examples] == ["fine film"]
    assert [example.line for example in result.examples] == [4]
    assert [row.line for row in result.bad_rows] == [2, 3]


def test_old_mac_line_ends_csv(tmp_path: Path) -> None:
    path = write(
        tmp_path / "reviews.csv",
        'text,label\rgood film,positive\r"two\rlines",negative\r',
    )

    result = read_examples(path)

    assert [example.text for example in result.examples] == [
        "good film",
        "two\rlines",
    ]
