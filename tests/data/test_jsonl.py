"""Tests for JSON Lines files."""

import json
from pathlib import Path

import pytest

from sentiment_lstm.data import DataError, ReadOptions, read_examples, read_texts


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_jsonl_labels(tmp_path: Path) -> None:
    records = [
        {"text": "great", "label": 1},
        {"text": "awful", "label": 0.0},
        {"text": "lovely", "label": True},
        {"text": "dire", "label": False},
        {"text": "fine", "label": "Positive"},
        {"text": "meh", "label": 1.0},
    ]
    path = write_lines(tmp_path / "reviews.jsonl", [json.dumps(r) for r in records])

    result = read_examples(path)

    assert [example.label for example in result.examples] == [1, 0, 1, 0, 1, 1]
    assert [example.line for example in result.examples] == [1, 2, 3, 4, 5, 6]


def test_jsonl_text_with_line_separators(tmp_path: Path) -> None:
    record = json.dumps(
        {"review": "one\u2028two\u0085three\nfour", "sentiment": 1}, ensure_ascii=False
    )
    path = tmp_path / "reviews.ndjson"
    path.write_text(record + "\n", encoding="utf-8")

    result = read_examples(path)

    assert result.examples[0].text == "one\u2028two\u0085three\nfour"


def test_jsonl_escaped_nul_is_text(tmp_path: Path) -> None:
    """A NUL or lone surrogate from a JSON escape is text, as in predict."""
    path = tmp_path / "reviews.jsonl"
    path.write_bytes(
        b'{"text": "great\\u0000 fun", "label": 1}\n'
        b'{"text": "dull \\udc80 plot", "label": 0}\n'
    )

    result = read_examples(path)

    assert [example.text for example in result.examples] == [
        "great\x00 fun",
        "dull \udc80 plot",
    ]
    assert result.bad_rows == []


def test_jsonl_raw_nul_byte_rejected(tmp_path: Path) -> None:
    path = tmp_path / "reviews.jsonl"
    path.write_bytes(
        b'{"text": "great\x00 fun", "label": 1}\n{"text": "ok", "label": 1}\n'
    )

    with pytest.raises(DataError, match="line 1: byte 0x00 \\(NUL\\) is invalid"):
        read_examples(path)


def test_jsonl_long_review_rejected(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("sentiment_lstm.data.fields.MAX_REVIEW_CHARS", 20)
    lines = [
        '{"text": "good fun", "label": 1}',
        json.dumps({"text": "Awful. " * 10, "label": 0}),
        '{"text": "dull", "label": 0}',
    ]
    path = write_lines(tmp_path / "reviews.jsonl", lines)

    with pytest.raises(DataError) as error:
        read_examples(path)
    with_unscored = read_texts(path, ReadOptions(keep_unscored=True))

    assert str(error.value).startswith(
        f"{path} line 2: the review is longer than 16,777,216 characters"
    )
    assert [example.text for example in with_unscored.examples] == ["good fun", "dull"]
    assert [(row.line, row.text) for row in with_unscored.unscored] == [(2, "")]


def test_jsonl_invalid_line(tmp_path: Path) -> None:
    lines = ['{"text": "good", "label": 1}', '{"text": "bad", "label": ', "[1, 2]"]
    path = write_lines(tmp_path / "reviews.jsonl", lines)

    with pytest.raises(DataError, match=r"reviews\.jsonl line 2: invalid JSON"):
        read_examples(path)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"text": "tab\there", "label": 1}', "Invalid control character at column 14"),
        ('{"text": "open, "label": 1}', "Expecting ',' delimiter at column 18"),
        ('{"text": "never closed', "Unterminated string starting at column 10"),
    ],
)
def test_jsonl_error_column_worded(tmp_path: Path, line: str, reason: str) -> None:
    path = write_lines(tmp_path / "reviews.jsonl", [line])

    with pytest.raises(DataError) as excinfo:
        read_examples(path)

    assert f"line 1: invalid JSON: {reason};" in str(excinfo.value)


def test_jsonl_byte_order_mark_inside_named(tmp_path: Path) -> None:
    # Two UTF-8 files with byte order marks joined by cat.
    path = tmp_path / "reviews.jsonl"
    record = '{"text": "good", "label": 1}\n'.encode()
    path.write_bytes(b"\xef\xbb\xbf" + record + b"\xef\xbb\xbf" + record)

    with pytest.raises(DataError) as excinfo:
        read_examples(path)

    message = str(excinfo.value)
    assert "line 2: invalid JSON: the line starts with a byte order mark" in message
    assert "remove the byte order mark" in message


def test_jsonl_mixed_cr_line_ends_named(tmp_path: Path) -> None:
    # A file with both kinds of line ends is split at "\n" alone.
    path = tmp_path / "reviews.jsonl"
    path.write_bytes(
        b'{"text": "good", "label": 1}\r{"text": "bad", "label": 0}\r\n'
        b'{"text": "fine", "label": 1}\n'
    )

    with pytest.raises(DataError, match=r"line 1: invalid JSON.*old Mac line ends"):
        read_examples(path)


def test_jsonl_bad_rows_skipped(tmp_path: Path) -> None:
    lines = [
        '{"text": "good", "label": 1}',
        '{"text": "bad", "label": ',
        "[1, 2]",
        '{"label": 0}',
        '{"text": 42, "label": 0}',
        '{"text": "no label", "label": null}',
        "",
        '{"text": "fine", "label": 2}',
        '{"text": "dull", "label": "neg"}',
    ]
    path = write_lines(tmp_path / "reviews.jsonl", lines)

    result = read_examples(path, ReadOptions(skip_bad_rows=True))
    reasons = {row.line: row.reason for row in result.bad_rows}

    assert [example.line for example in result.examples] == [1, 9]
    assert sorted(reasons) == [2, 3, 4, 5, 6, 7, 8]
    assert reasons[2].startswith("invalid JSON")
    assert reasons[3] == "expected a JSON object, found a JSON array"
    assert reasons[4] == "missing text field 'text'"
    assert reasons[5] == "text field 'text' is a JSON number, not a string"
    assert reasons[6] == "missing label in field 'label'"
    assert reasons[7] == "empty line"
    assert reasons[8] == "unknown label 2"


def test_jsonl_missing_field_error(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "reviews.jsonl", ['{"body": "good", "mood": 1}'])

    with pytest.raises(DataError) as excinfo:
        read_examples(path)

    message = str(excinfo.value)
    assert "no label column found" in message
    assert "the record on line 1 has fields: 'body', 'mood'" in message
    assert "pass --label-column" in message


@pytest.mark.parametrize("first", ['{"text": "no label"}', '{"label": 1}'])
def test_jsonl_first_record_bad_row(tmp_path: Path, first: str) -> None:
    lines = [first, '{"text": "good", "label": 1}', '{"text": "dull", "label": 0}']
    path = write_lines(tmp_path / "reviews.jsonl", lines)

    result = read_examples(path, ReadOptions(skip_bad_rows=True))

    assert [example.line for example in result.examples] == [2, 3]
    assert [row.line for row in result.bad_rows] == [1]
    assert result.bad_rows[0].reason.startswith("missing ")


def test_jsonl_first_record_error_line(tmp_path: Path) -> None:
    lines = ['{"text": "no label"}', '{"text": "good", "label": 1}']
    path = write_lines(tmp_path / "reviews.jsonl", lines)

    with pytest.raises(DataError) as excinfo:
        read_examples(path, ReadOptions(label_column="label"))

    message = str(excinfo.value)
    assert message.startswith(f"{path} line 1: missing label in field 'label'")
    assert "--skip-bad-rows" in message


def test_jsonl_field_missing_everywhere(tmp_path: Path) -> None:
    lines = ['{"text": "good"}', '{"text": "dull"}']
    path = write_lines(tmp_path / "reviews.jsonl", lines)

    with pytest.raises(DataError) as excinfo:
        read_examples(path, ReadOptions(skip_bad_rows=True))

    message = str(excinfo.value)
    assert "no label column found" in message
    assert "the record on line 1 has fields 'text' alone" in message


def test_jsonl_named_fields(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "reviews.jsonl", ['{"body": "good", "mood": "pos"}'])

    result = read_examples(path, ReadOptions(label_column="mood"))

    assert result.examples[0].label == 1


def test_jsonl_stars(tmp_path: Path) -> None:
    lines = [json.dumps({"text": f"r{n}", "stars": n}) for n in (1, 3, 4.5, 5)]
    path = write_lines(tmp_path / "reviews.jsonl", lines)

    result = read_examples(path, ReadOptions(stars=True))

    assert [example.label for example in result.examples] == [0, 1, 1]
    assert result.left_out_by_stars == 1


def test_jsonl_boolean_rating_rejected(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "reviews.jsonl", ['{"text": "a", "stars": true}'])

    with pytest.raises(DataError, match="invalid rating true"):
        read_examples(path, ReadOptions(stars=True))


def test_jsonl_without_labels(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "input.jsonl", ['{"text": "a"}', '{"text": "b"}'])

    result = read_texts(path)

    assert [example.label for example in result.examples] == [None, None]


def test_jsonl_blank_lines_at_end_ignored(tmp_path: Path) -> None:
    lines = ['{"text": "good", "label": 1}', "", '{"text": "bad", "label": 0}']
    path = tmp_path / "reviews.jsonl"
    path.write_text("\n".join(lines) + "\n\n  \n\n", encoding="utf-8")

    result = read_examples(path, ReadOptions(skip_bad_rows=True))

    assert [example.line for example in result.examples] == [1, 3]
    assert [(row.line, row.reason) for row in result.bad_rows] == [(2, "empty line")]


def test_jsonl_exact_case_key_wins(tmp_path: Path) -> None:
    record = {"Text": "wrong", "text": "right", "label": 1}
    path = write_lines(tmp_path / "reviews.jsonl", [json.dumps(record)])

    result = read_examples(path)

    assert result.examples[0].text == "right"


def test_jsonl_duplicate_label_key(tmp_path: Path) -> None:
    lines = [
        '{"text": "great", "label": 1}',
        '{"text": "awful", "label": 1, "label": 0}',
    ]
    path = write_lines(tmp_path / "reviews.jsonl", lines)

    with pytest.raises(DataError) as excinfo:
        read_examples(path)

    message = str(excinfo.value)
    assert "reviews.jsonl line 2:" in message
    assert "the field 'label' occurs 2 times in the record" in message
    assert "--skip-bad-rows" in message


def test_jsonl_duplicate_text_key_skipped(tmp_path: Path) -> None:
    lines = [
        '{"text": "great", "text": "awful", "label": 1}',
        '{"text": "dire", "label": 0}',
        '{"text": "lovely", "label": 1, "at": 1, "at": 2}',
    ]
    path = write_lines(tmp_path / "reviews.jsonl", lines)

    result = read_examples(path, ReadOptions(skip_bad_rows=True))

    assert [example.text for example in result.examples] == ["dire", "lovely"]
    assert [row.line for row in result.bad_rows] == [1]
    assert "the field 'text' occurs 2 times" in result.bad_rows[0].reason


def test_jsonl_rating_beyond_float_is_bad_row(tmp_path: Path) -> None:
    lines = [
        '{"text": "great", "score": 5}',
        '{"text": "huge", "score": 1' + "0" * 400 + "}",
    ]
    path = write_lines(tmp_path / "reviews.jsonl", lines)

    with pytest.raises(DataError) as excinfo:
        read_examples(path, ReadOptions(stars=True))

    message = str(excinfo.value)
    assert "reviews.jsonl line 2: invalid rating" in message
    assert "--skip-bad-rows" in message


def test_jsonl_number_too_long_is_bad_row(tmp_path: Path) -> None:
    lines = [
        '{"text": "great", "score": 5}',
        '{"text": "huger", "score": 1' + "0" * 5000 + "}",
        '{"text": "awful", "score": 1}',
    ]
    path = write_lines(tmp_path / "reviews.jsonl", lines)

    with pytest.raises(DataError, match=r"reviews\.jsonl line 2: invalid JSON"):
        read_examples(path, ReadOptions(stars=True))
    result = read_examples(path, ReadOptions(stars=True, skip_bad_rows=True))

    assert [example.text for example in result.examples] == ["great", "awful"]
    assert [row.line for row in result.bad_rows] == [2]


def test_jsonl_deep_nesting_is_bad_row(tmp_path: Path) -> None:
    lines = [
        '{"text": "great", "label": 1}',
        '{"text": "deep", "label": ' + "[" * 100_000 + "]" * 100_000 + "}",
        '{"text": "awful", "label": 0}',
    ]
    path = write_lines(tmp_path / "reviews.jsonl", lines)

    result = read_examples(path, ReadOptions(skip_bad_rows=True))

    assert [example.text for example in result.examples] == ["great", "awful"]
    assert [row.line for row in result.bad_rows] == [2]
    assert "nested too deeply" in result.bad_rows[0].reason


def test_jsonl_null_text_named(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "reviews.jsonl",
        ['{"text": "good", "label": 1}', '{"text": null, "label": 0}'],
    )

    with pytest.raises(DataError, match="line 2: text field 'text' is null"):
        read_examples(path)


def test_jsonl_carriage_return_line_ends(tmp_path: Path) -> None:
    path = tmp_path / "reviews.jsonl"
    path.write_bytes(
        b'{"text": "good", "label": "pos"}\r{"text": "dull", "label": "neg"}\r'
    )

    result = read_examples(path)

    assert [example.text for example in result.examples] == ["good", "dull"]
    assert [example.line for example in result.examples] == [1, 2]


def test_jsonl_field_case_per_record(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "reviews.jsonl",
        ['{"Text": "good", "Label": 1}', '{"text": "dull", "label": 0}'],
    )

    result = read_examples(path)

    assert [example.text for example in result.examples] == ["good", "dull"]
    assert [example.label for example in result.examples] == [1, 0]


def test_jsonl_ambiguous_field_case_named(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "reviews.jsonl",
        [
            '{"Text": "good", "label": 1}',
            '{"text": "x", "TEXT": "y", "label": 0}',
        ],
    )

    with pytest.raises(DataError) as excinfo:
        read_examples(path)

    message = str(excinfo.value)
    assert "line 2: missing text field 'Text': the keys 'text', 'TEXT' match" in (
        message
    )
    assert "rename all but one of them" in message
