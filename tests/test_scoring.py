"""Streaming file scoring: rows, order, columns, errors in place, formats."""

from __future__ import annotations

import csv
import errno
import gc
import io
import json
import logging
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from sentiment_lstm import scoring
from sentiment_lstm.cli import main
from sentiment_lstm.data import DataError, ReadOptions
from sentiment_lstm.export import export_model
from sentiment_lstm.predictor import EMPTY_REVIEW, SentimentModel
from sentiment_lstm.scoring import detect_encoding, score_file
from tests.conftest import NEGATIVE_REVIEWS, POSITIVE_REVIEWS
from tests.test_predictor import write_model_dir

REVIEWS = POSITIVE_REVIEWS + NEGATIVE_REVIEWS


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    directory = write_model_dir(tmp_path_factory.mktemp("scoring") / "model")
    export_model(directory)
    return directory


@pytest.fixture(scope="module")
def model(model_dir) -> SentimentModel:
    return SentimentModel.load(model_dir, backend="onnx")


# Prediction input read with --skip-bad-rows.
SKIP_BAD_ROWS = ReadOptions(skip_bad_rows=True, require_labels=False)


def expected_positive(model: SentimentModel, texts: list[str]) -> list[float]:
    return model.predict_proba(texts).tolist()


def read_csv(path: Path, delimiter: str = ",") -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as stream:
        return list(csv.DictReader(stream, delimiter=delimiter))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_score_chunks_keeps_payloads_in_order(model):
    texts = REVIEWS * 3
    chunks = [(start, texts[start : start + 4]) for start in range(0, len(texts), 4)]
    chunks.append((len(texts), ["", "   "]))
    gc_enabled = gc.isenabled()

    scored = list(scoring.score_chunks(model, chunks, batch_size=3))

    assert [payload for payload, _ in scored] == [payload for payload, _ in chunks]
    positive = [p for _, probabilities in scored[:-1] for p in probabilities]
    assert positive == pytest.approx(expected_positive(model, texts), abs=1e-6)
    assert all(np.isnan(p) for p in scored[-1][1])
    assert gc.isenabled() == gc_enabled


def test_csv_keeps_rows_across_chunks(model, tmp_path):
    texts = [REVIEWS[i % len(REVIEWS)] for i in range(23)]
    source = write_csv(
        tmp_path / "in.csv",
        ["id", "text", "stars"],
        [[str(i), text, str(i % 5)] for i, text in enumerate(texts)],
    )

    summary = score_file(
        model, source, tmp_path / "out.csv", chunk_rows=4, batch_size=3
    )
    rows = read_csv(tmp_path / "out.csv")

    assert summary.rows == 23
    assert [row["id"] for row in rows] == [str(i) for i in range(23)]
    assert [row["text"] for row in rows] == texts
    assert [row["stars"] for row in rows] == [str(i % 5) for i in range(23)]
    expected = expected_positive(model, texts)
    assert [float(row["positive"]) for row in rows] == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("suffix", [".csv", ".txt", ".jsonl"])
def test_chunks_end_at_character_budget(model, tmp_path, monkeypatch, suffix):
    texts = [REVIEWS[i % len(REVIEWS)] * (1 + i % 3) for i in range(40)]
    source = tmp_path / f"in{suffix}"
    if suffix == ".csv":
        write_csv(source, ["text"], [[text] for text in texts])
    elif suffix == ".txt":
        source.write_text("\n".join(texts) + "\n")
    else:
        source.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    monkeypatch.setattr(scoring, "CHUNK_CHARS", 200)
    chunk_sizes = []
    real_encoded_chunks = scoring._encoded_chunks

    def recording(reader, scorer, chunk_rows):
        for chunk, token_ids in real_encoded_chunks(reader, scorer, chunk_rows):
            chunk_sizes.append((len(chunk.records), chunk.chars))
            yield chunk, token_ids

    monkeypatch.setattr(scoring, "_encoded_chunks", recording)

    summary = score_file(model, source, tmp_path / "out.jsonl")
    rows = read_jsonl(tmp_path / "out.jsonl")

    assert summary.rows == 40
    assert [row["text"] for row in rows] == texts
    expected = expected_positive(model, texts)
    assert [row["positive"] for row in rows] == pytest.approx(expected, abs=1e-6)
    assert len(chunk_sizes) > 1
    assert sum(rows for rows, _ in chunk_sizes) == 40
    # a chunk stops at the first row that takes it to the budget
    longest = max(len(text) for text in texts)
    assert all(chars < 200 + longest for _, chars in chunk_sizes)


def test_chunks_count_other_columns(model, tmp_path, monkeypatch):
    texts = [REVIEWS[i % len(REVIEWS)] for i in range(12)]
    source = write_csv(
        tmp_path / "in.csv", ["text", "notes"], [[t, "x" * 100] for t in texts]
    )
    monkeypatch.setattr(scoring, "CHUNK_CHARS", 250)
    chunk_rows = []
    real_encoded_chunks = scoring._encoded_chunks

    def recording(reader, scorer, rows):
        for chunk, token_ids in real_encoded_chunks(reader, scorer, rows):
            chunk_rows.append(len(chunk.records))
            yield chunk, token_ids

    monkeypatch.setattr(scoring, "_encoded_chunks", recording)

    score_file(model, source, tmp_path / "out.csv")

    assert [row["text"] for row in read_csv(tmp_path / "out.csv")] == texts
    # each row has more than 100 characters, so a chunk ends after 3 rows
    assert max(chunk_rows) <= 3
    assert sum(chunk_rows) == 12


@pytest.mark.parametrize("suffix", [".txt", ".jsonl"])
def test_review_over_field_limit_marked(model, tmp_path, suffix):
    from sentiment_lstm.data.delimited import FIELD_SIZE_LIMIT

    long_review = "great " * (FIELD_SIZE_LIMIT // 6 + 1)
    texts = ["a fine film", long_review, "a dull film"]
    source = tmp_path / f"in{suffix}"
    if suffix == ".txt":
        source.write_text("\n".join(texts) + "\n")
    else:
        source.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))

    summary = score_file(model, source, tmp_path / "out.jsonl")
    rows = read_jsonl(tmp_path / "out.jsonl")

    assert summary.unscored == 1
    assert [row["text"] for row in rows] == texts
    assert rows[1]["error"] == (
        f"line 2: the review is longer than {FIELD_SIZE_LIMIT:,} characters, the "
        "most a review may have"
    )
    assert rows[1]["positive"] is None
    assert rows[2]["positive"] is not None


def test_csv_output_columns(model, tmp_path):
    source = write_csv(tmp_path / "in.csv", ["text", "id"], [["great fun", "1"]])

    score_file(model, source, tmp_path / "out.csv")
    with open(tmp_path / "out.csv", encoding="utf-8") as stream:
        header = stream.readline().strip()

    assert header == "text,id,positive,negative,label,error"


def test_csv_scores_consistent(model, tmp_path):
    source = write_csv(tmp_path / "in.csv", ["text"], [[text] for text in REVIEWS])

    score_file(model, source, tmp_path / "out.csv")
    rows = read_csv(tmp_path / "out.csv")

    for row in rows:
        positive = float(row["positive"])
        assert positive + float(row["negative"]) == pytest.approx(1.0, abs=2e-6)
        assert row["label"] == ("positive" if positive >= 0.5 else "negative")
        assert row["error"] == ""


def test_quoted_fields(model, tmp_path):
    tricky = [
        'a "great", funny film,\nwith two lines',
        "commas, everywhere, here",
        'only "quotes"',
    ]
    notes = ["note, with comma", "multi\nline\r\nnote", '""']
    source = write_csv(
        tmp_path / "in.csv",
        ["note", "text"],
        [[note, text] for note, text in zip(notes, tricky)],
    )

    score_file(model, source, tmp_path / "out.csv", chunk_rows=2)
    rows = read_csv(tmp_path / "out.csv")

    assert [row["text"] for row in rows] == tricky
    assert [row["note"] for row in rows] == notes
    assert all(row["label"] for row in rows)


def test_empty_text_in_place(model, tmp_path):
    source = write_csv(
        tmp_path / "in.csv",
        ["id", "text"],
        [["1", "great fun"], ["2", ""], ["3", "   "], ["4", "a dull mess"]],
    )

    summary = score_file(model, source, tmp_path / "out.csv", chunk_rows=2)
    rows = read_csv(tmp_path / "out.csv")

    assert [row["id"] for row in rows] == ["1", "2", "3", "4"]
    assert [row["error"] for row in rows] == [
        "",
        f"line 3: {EMPTY_REVIEW}",
        f"line 4: {EMPTY_REVIEW}",
        "",
    ]
    assert rows[1]["positive"] == ""
    assert rows[1]["label"] == ""
    assert rows[3]["label"] in ("positive", "negative")
    assert summary.unscored == 2
    assert summary.scored == 2


def test_only_header(model, tmp_path):
    source = write_csv(tmp_path / "in.csv", ["text", "id"], [])

    summary = score_file(model, source, tmp_path / "out.csv")

    assert summary.rows == 0
    assert (tmp_path / "out.csv").read_text() == (
        "text,id,positive,negative,label,error\n"
    )


def test_label_column_kept(model, tmp_path):
    source = write_csv(
        tmp_path / "in.csv", ["review", "label"], [["great fun", "1"], ["dull", "0"]]
    )

    score_file(model, source, tmp_path / "out.csv")
    rows = read_csv(tmp_path / "out.csv")

    assert [row["label"] for row in rows] == ["1", "0"]
    assert rows[0]["predicted_label"] in ("positive", "negative")
    assert list(rows[0]) == [
        "review",
        "label",
        "predicted_positive",
        "predicted_negative",
        "predicted_label",
        "predicted_error",
    ]


def test_text_column_option(model, tmp_path):
    source = write_csv(
        tmp_path / "in.csv", ["text", "body"], [["", "great fun"], ["", "dull"]]
    )

    score_file(
        model,
        source,
        tmp_path / "out.csv",
        options=ReadOptions(text_column="body", require_labels=False),
    )
    rows = read_csv(tmp_path / "out.csv")

    assert all(row["error"] == "" for row in rows)


def test_missing_text_column(model, tmp_path):
    source = write_csv(tmp_path / "in.csv", ["id", "stars"], [["1", "5"]])

    with pytest.raises(DataError, match="no text column found"):
        score_file(model, source, tmp_path / "out.csv")

    assert not (tmp_path / "out.csv").exists()


def test_bad_row_raises_with_line(model, tmp_path):
    source = tmp_path / "in.csv"
    source.write_text('id,text\n1,"great fun"\n2,"two\nlines"\n3,dull,extra\n')

    with pytest.raises(DataError, match=r"in\.csv line 5: expected 2 fields"):
        score_file(model, source, tmp_path / "out.csv")

    assert not (tmp_path / "out.csv").exists()
    assert os.listdir(tmp_path) == ["in.csv"]


def test_bad_row_skipped(model, tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("id,text\n1,great fun\n2,dull,extra\n3,boring\n")

    summary = score_file(model, source, tmp_path / "out.csv", options=SKIP_BAD_ROWS)
    rows = read_csv(tmp_path / "out.csv")

    assert [row["id"] for row in rows] == ["1", "2", "3"]
    assert rows[1]["text"] == "dull"
    assert rows[1]["positive"] == ""
    assert rows[1]["error"] == (
        "line 3: expected 2 fields as in the header, found 3; the field past the "
        'last column: ["extra"]'
    )
    assert rows[2]["positive"] != ""
    assert summary.unparsed == 1
    assert summary.unscored == 1


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_rows_of_other_widths_keep_their_fields(model, tmp_path, suffix):
    source = tmp_path / "in.tsv"
    source.write_text(
        "id\ttext\tsource\n1\tgreat fun\tweb\n2\tshort\n"
        '3\tdull\tapp\t"a\tb"\tc, d\n4\tfine\tapp\n'
    )
    output = tmp_path / f"out{suffix}"

    summary = score_file(model, source, output, options=SKIP_BAD_ROWS)
    if suffix == ".csv":
        rows = read_csv(output)
    else:
        rows = [json.loads(line) for line in output.read_text().splitlines()]

    assert [(row["id"], row["text"], row["source"]) for row in rows] == [
        ("1", "great fun", "web"),
        ("2", "short", ""),
        ("3", "dull", "app"),
        ("4", "fine", "app"),
    ]
    assert rows[1]["error"] == "line 3: expected 3 fields as in the header, found 2"
    assert rows[2]["error"] == (
        "line 4: expected 3 fields as in the header, found 5; the fields past "
        'the last column: ["a\\tb", "c, d"]'
    )
    assert summary.unparsed == 2


def test_record_that_does_not_parse_keeps_no_fields(model, tmp_path):
    source = tmp_path / "in.csv"
    source.write_text('id,text\n1,"great" fun\n2,dull\n')

    score_file(model, source, tmp_path / "out.csv", options=SKIP_BAD_ROWS)
    rows = read_csv(tmp_path / "out.csv")

    assert [(row["id"], row["text"]) for row in rows] == [("", ""), ("2", "dull")]
    assert rows[0]["error"].startswith("line 2: invalid record")


def test_one_row_warnings_singular(model, tmp_path, caplog):
    source = tmp_path / "in.csv"
    source.write_text("id,text\n1,great fun\n2,dull,extra\n3,\n")

    with caplog.at_level(logging.WARNING, logger="sentiment_lstm"):
        score_file(model, source, tmp_path / "out.csv", options=SKIP_BAD_ROWS)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]

    assert warnings == [
        f"1 row of {source} did not parse; it was written in its place with "
        "the reason as its error: line 3: expected 2 fields as in the header, "
        "found 3",
        f"2 rows of {source} were not scored; the reasons are in the error column",
    ]


def test_many_row_warnings_plural(model, tmp_path, caplog):
    source = tmp_path / "in.csv"
    rows = [f"{i},dull,extra" for i in range(7)] + ["7,", "8,"]
    source.write_text("id,text\n" + "\n".join(rows) + "\n")

    with caplog.at_level(logging.WARNING, logger="sentiment_lstm"):
        score_file(model, source, tmp_path / "out.csv", options=SKIP_BAD_ROWS)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]

    assert warnings[0].startswith(
        f"7 rows of {source} did not parse; each was written in its place with "
        "the reason as its error (the first 5): line 2: "
    )
    assert warnings[1] == (
        f"9 rows of {source} were not scored; the reasons are in the error column"
    )


@pytest.mark.parametrize(
    ("suffix", "where"),
    [
        (".csv", "in the predicted_error column"),
        (".jsonl", "under the predicted_error key"),
    ],
)
def test_unscored_warning_names_renamed_error(model, tmp_path, caplog, suffix, where):
    # The label column of training data moves the scores to predicted_*.
    source = tmp_path / "in.csv"
    source.write_text("text,label\ngreat fun,positive\n,negative\n")

    with caplog.at_level(logging.WARNING, logger="sentiment_lstm"):
        score_file(model, source, tmp_path / f"out{suffix}")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]

    assert warnings == [f"1 row of {source} was not scored; the reason is {where}"]


@pytest.mark.parametrize("suffix, delimiter", [(".csv", ","), (".tsv", "\t")])
def test_carriage_return_in_field(model, tmp_path, suffix, delimiter):
    texts = ["great film\rreally", "plain one", "dull\r"]
    source = tmp_path / f"in{suffix}"
    with open(source, "w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream, delimiter=delimiter)
        writer.writerow(["id", "text"])
        writer.writerows([[str(index), text] for index, text in enumerate(texts)])

    score_file(model, source, tmp_path / f"out{suffix}", chunk_rows=2)
    rows = read_csv(tmp_path / f"out{suffix}", delimiter=delimiter)

    assert [row["text"] for row in rows] == texts
    assert [row["id"] for row in rows] == ["0", "1", "2"]
    assert all(row["label"] for row in rows)
    # A row without a carriage return keeps the usual minimal quoting.
    lines = (tmp_path / f"out{suffix}").read_bytes().decode("utf-8").split("\n")
    assert lines[2].startswith(f"1{delimiter}plain one{delimiter}")


def test_tsv(model, tmp_path):
    source = tmp_path / "in.tsv"
    source.write_text("id\ttext\n1\tgreat, fun\n2\t\n3\tdull mess\n")

    score_file(model, source, tmp_path / "out.tsv", chunk_rows=2)
    rows = read_csv(tmp_path / "out.tsv", delimiter="\t")

    assert [row["text"] for row in rows] == ["great, fun", "", "dull mess"]
    assert rows[1]["error"] == f"line 3: {EMPTY_REVIEW}"
    assert rows[2]["label"] in ("positive", "negative")


def test_jsonl_adds_keys(model, tmp_path):
    lines = [
        '{"id": 1, "text": "great fun", "meta": {"stars": 4.50, "tags": ["a"]}}',
        '{"text": "", "id": 2}',
        '{"id": 3}',
        '{"id": 4, "text": 17}',
        '{"id": 5, "text": "a dull mess"}',
        '{"id": 6, "text": null}',
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(lines) + "\n")

    summary = score_file(model, source, tmp_path / "out.jsonl", chunk_rows=2)
    written = (tmp_path / "out.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in written]

    assert [record["id"] for record in records] == [1, 2, 3, 4, 5, 6]
    assert written[0].startswith(
        '{"id": 1, "text": "great fun", "meta": {"stars": 4.50'
    )
    assert records[0]["meta"] == {"stars": 4.5, "tags": ["a"]}
    assert records[0]["label"] in ("positive", "negative")
    assert "error" not in records[0]
    assert records[1]["error"] == f"line 2: {EMPTY_REVIEW}"
    assert records[1]["positive"] is None
    assert records[2]["error"] == "line 3: missing text field 'text'"
    assert "is a JSON number, not a string" in records[3]["error"]
    assert records[5]["error"] == "line 6: text field 'text' is null"
    assert summary.unscored == 4


def test_jsonl_empty_object_record(model, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "great fun"}\n{}\n')

    score_file(model, source, tmp_path / "out.jsonl")
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").open()]

    assert records[1]["error"] == "line 2: missing text field 'text'"


@pytest.mark.parametrize("chunk_rows", [1, 2, 100])
def test_jsonl_empty_lines_in_place(model, tmp_path, chunk_rows, caplog):
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "great fun", "id": 1}\n\n  \n{"text": "dull"}\n\n \n')

    with caplog.at_level(logging.INFO, logger="sentiment_lstm"):
        summary = score_file(
            model, source, tmp_path / "out.jsonl", chunk_rows=chunk_rows
        )
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").open()]

    # The blank lines at the end hold no record, as for training.
    assert [record.get("text") for record in records] == [
        "great fun",
        None,
        None,
        "dull",
    ]
    assert records[1] == {
        "positive": None,
        "negative": None,
        "label": None,
        "error": "line 2: empty line",
    }
    assert records[2]["error"] == "line 3: empty line"
    assert records[3]["label"] in ("positive", "negative")
    assert summary.unscored == 2
    assert summary.unparsed == 0
    assert f"left out 2 blank lines at the end of {source}" in caplog.text


def test_text_blank_lines_at_end_left_out(model, tmp_path, caplog):
    source = tmp_path / "in.txt"
    source.write_text("great fun\n\n  \ndull\n\n  \n\n")
    output = tmp_path / "out.csv"

    with caplog.at_level(logging.INFO, logger="sentiment_lstm"):
        summary = score_file(model, source, output)
    rows = read_csv(output, ",")

    assert [(row["text"], row["error"] != "") for row in rows] == [
        ("great fun", False),
        ("", True),
        ("  ", True),
        ("dull", False),
    ]
    assert summary.rows == 4
    assert f"left out 3 blank lines at the end of {source}" in caplog.text


@pytest.mark.parametrize("blank", ["", "   "])
@pytest.mark.parametrize("delimiter", [",", "\t"])
def test_delimited_blank_lines_in_place(model, tmp_path, delimiter, blank, caplog):
    source = tmp_path / "in.csv"
    source.write_text(
        f"id{delimiter}text\n1{delimiter}great fun\n{blank}\n2{delimiter}dull\n"
        f"{blank}\n"
    )

    data_format = "csv" if delimiter == "," else "tsv"
    output = tmp_path / f"out.{data_format}"

    with caplog.at_level(logging.INFO, logger="sentiment_lstm"):
        summary = score_file(
            model,
            source,
            output,
            options=ReadOptions(format=data_format, require_labels=False),
        )
    rows = read_csv(output, delimiter)

    assert f"left out 1 blank line at the end of {source}" in caplog.text
    # The blank line at the end contains no record, as for training.
    assert [(row["id"], row["text"], row["error"]) for row in rows] == [
        ("1", "great fun", ""),
        ("", "", "line 3: empty line"),
        ("2", "dull", ""),
    ]
    assert summary.unscored == 1
    assert summary.unparsed == 0


def test_jsonl_first_record_without_text(model, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"id": 1}\n{"id": 2, "text": "great fun"}\n{"id": 3}\n')

    summary = score_file(model, source, tmp_path / "out.jsonl")
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").open()]

    assert summary.rows == 3
    assert summary.scored == 1
    assert [record["id"] for record in records] == [1, 2, 3]
    assert records[0]["error"] == "line 1: no text field among the keys: 'id'"
    assert records[1]["positive"] == pytest.approx(
        expected_positive(model, ["great fun"])[0], abs=1e-6
    )
    assert records[2]["error"] == "line 3: missing text field 'text'"


def test_jsonl_without_any_text_field(model, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"id": 1}\n{"id": 2}\n')

    with pytest.raises(DataError, match="line 1 has fields: 'id'"):
        score_file(model, source, tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()


def test_jsonl_named_text_column_missing_stops_early(model, tmp_path):
    source = tmp_path / "in.jsonl"
    records = [{"id": number, "text": f"review {number}"} for number in range(5000)]
    source.write_text("".join(json.dumps(record) + "\n" for record in records))
    options = ReadOptions(require_labels=False, text_column="nope")
    stream = io.StringIO()
    calls = []
    original = model.submit_token_ids

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    model.submit_token_ids = counted
    try:
        with pytest.raises(DataError, match="text column 'nope' not found"):
            score_file(model, source, stream, output_format="jsonl", options=options)
    finally:
        del model.submit_token_ids

    assert stream.getvalue() == ""
    assert calls == []


def test_jsonl_rows_wait_for_text_key(model, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"id": 1}\n{"id": 2}\n{"id": 3, "text": "great fun"}\n')
    stream = io.StringIO()

    summary = score_file(model, source, stream, output_format="jsonl", chunk_rows=1)
    records = [json.loads(line) for line in stream.getvalue().splitlines()]

    assert summary.rows == 3
    assert [record["id"] for record in records] == [1, 2, 3]
    assert [record.get("error") for record in records] == [
        "line 1: no text field among the keys: 'id'",
        "line 2: no text field among the keys: 'id'",
        None,
    ]


def test_unclosed_quote_stops_scoring(model, tmp_path):
    rows = [f"{i},review {i}" for i in range(1, 3000)]
    rows[1499] = '1500,"opens a quote'
    rows[2499] = '2500,"closed" late'
    source = tmp_path / "in.csv"
    source.write_text("id,text\n" + "\n".join(rows) + "\n")

    with pytest.raises(
        DataError,
        match=r"in\.csv line 1501: a quote opened on this line runs on to line 2501, ",
    ):
        score_file(model, source, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


# Rows of prediction input whose quote on line 5 is not closed on it. The
# record of line 5 fails on line 7, where the quote that opens a legit quoted
# field closes its field and text follows.
OPEN_QUOTE_ROWS = [
    "id{sep}text",
    '1{sep}"first{end}quoted"',
    "2{sep}caf\u00e9 film",
    '3{sep}"broken na\u00efve quote, film',
    "4{sep}great fun",
    '5{sep}"second{end}quoted"',
    "6{sep}",
    "7{sep}awful plot",
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
def test_open_quote_scores_later_rows(
    model, tmp_path, suffix, end, encoding, final_break
):
    sep = "\t" if suffix == ".tsv" else ","
    text = end.join(OPEN_QUOTE_ROWS).format(sep=sep, end=end)
    source = tmp_path / f"in{suffix}"
    source.write_bytes((text + (end if final_break else "")).encode(encoding))

    summary = score_file(model, source, tmp_path / "out.csv", options=SKIP_BAD_ROWS)
    rows = read_csv(tmp_path / "out.csv")

    assert [row["id"] for row in rows] == ["1", "2", "", "4", "5", "6", "7"]
    assert rows[2]["text"] == ""
    assert rows[2]["positive"] == ""
    line_text = json.dumps(f'3{sep}"broken na\u00efve quote, film', ensure_ascii=False)
    assert rows[2]["error"] == (
        "line 5: a quote opened on this line runs on to line 7, where the "
        f"record does not parse: {sep!r} expected after '\"'; the text of the "
        f"line: {line_text}"
    )
    assert rows[5]["error"] == f"line 9: {EMPTY_REVIEW}"
    scored = [row for row in rows if row["positive"]]
    texts = [f"first{end}quoted", "caf\u00e9 film", "great fun"]
    texts += [f"second{end}quoted", "awful plot"]
    assert [row["text"] for row in scored] == texts
    positive = [float(row["positive"]) for row in scored]
    assert positive == pytest.approx(expected_positive(model, texts), abs=1e-5)
    assert summary.rows == 7
    assert summary.unparsed == 1


def test_open_quote_text_kept_in_error(model, tmp_path, caplog):
    source = tmp_path / "in.csv"
    source.write_text('id,text\n1,good film\n2,"broken quote film\n3,great fun\n')

    with caplog.at_level(logging.WARNING, logger="sentiment_lstm"):
        summary = score_file(model, source, tmp_path / "out.csv", options=SKIP_BAD_ROWS)
    rows = read_csv(tmp_path / "out.csv")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]

    assert [row["id"] for row in rows] == ["1", "", "3"]
    error = rows[1]["error"]
    prefix = (
        "line 3: a quote opened on this line never closes, so the record runs "
        "on to the end of the file at line 4; the text of the line: "
    )
    assert error.startswith(prefix)
    assert json.loads(error.removeprefix(prefix)) == '2,"broken quote film'
    assert rows[2]["label"] != ""
    assert summary.unparsed == 1
    assert warnings[0] == (
        f"1 row of {source} did not parse; it was written in its place with "
        "the reason as its error: line 3: a quote opened on this line never "
        "closes, so the record runs on to the end of the file at line 4"
    )


def test_output_through_symlink(model, tmp_path):
    source = write_csv(tmp_path / "in.csv", ["text"], [["great fun"]])
    target = tmp_path / "real.csv"
    target.write_text("old\n")
    link = tmp_path / "link.csv"
    link.symlink_to(target)

    score_file(model, source, link)

    assert link.is_symlink()
    assert read_csv(target)[0]["text"] == "great fun"


@pytest.mark.parametrize("mode", [0o600, 0o640])
def test_output_keeps_its_permissions(model, tmp_path, mode):
    source = write_csv(tmp_path / "in.csv", ["text"], [["great fun"]])
    output = tmp_path / "out.csv"
    output.write_text("old\n")
    output.chmod(mode)

    score_file(model, source, output)

    assert stat.S_IMODE(output.stat().st_mode) == mode
    assert read_csv(output)[0]["text"] == "great fun"


def test_output_name_too_long(model, tmp_path):
    source = write_csv(tmp_path / "in.csv", ["text"], [["great fun"]])
    output = tmp_path / f"{'r' * 300}.csv"

    with pytest.raises(DataError) as error:
        score_file(model, source, output)

    message = str(error.value)
    assert message.startswith(f"{output}: cannot write the output: ")
    assert message.endswith("; choose another --output")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in.csv"]


@pytest.mark.parametrize("stem", ["r" * 247, "\u00e9" * 123])
def test_output_name_near_length_limit(model, tmp_path, stem):
    source = write_csv(tmp_path / "in.csv", ["text"], [["great fun"]])
    # 251 bytes of stem and extension, within the 255 of a file name.
    output = tmp_path / f"{stem}.csv"

    score_file(model, source, output)

    assert read_csv(output)[0]["text"] == "great fun"
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        [output.name, "in.csv"]
    )


def test_output_to_named_pipe(model, tmp_path):
    source = write_csv(tmp_path / "in.csv", ["text"], [["great fun"], ["dull"]])
    pipe = tmp_path / "scores.csv"
    os.mkfifo(pipe)
    received = []
    reader = threading.Thread(target=lambda: received.append(pipe.read_text()))
    reader.start()

    score_file(model, source, pipe)
    reader.join(timeout=60)

    assert pipe.is_fifo()
    assert received[0].splitlines()[0] == "text,positive,negative,label,error"
    assert len(received[0].splitlines()) == 3


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"text": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
        ('{"text": "fine", "n": ' + "9" * 5000 + "}", "Exceeds the limit"),
    ],
)
def test_jsonl_line_python_cannot_parse(model, tmp_path, line, reason):
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "great fun"}\n' + line + '\n{"text": "dull"}\n')
    output = tmp_path / "out.jsonl"

    with pytest.raises(
        DataError, match=rf"in\.jsonl line 2: invalid JSON: .*{reason}"
    ) as error:
        score_file(model, source, output)
    assert "set_int_max_str_digits" not in str(error.value)

    summary = score_file(model, source, output, options=SKIP_BAD_ROWS)
    records = read_jsonl(output)

    assert summary.unparsed == 1
    assert [record.get("text") for record in records] == ["great fun", None, "dull"]
    assert records[1]["error"].startswith("line 2: invalid JSON")


def test_jsonl_repeated_text_key_is_bad_row(model, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text(
        '{"text": "great fun"}\n'
        '{"text": "great fun", "text": "dull"}\n'
        '{"text": "dull", "id": 1, "id": 2}\n'
    )
    output = tmp_path / "out.jsonl"

    with pytest.raises(
        DataError, match=r"line 2: the field 'text' occurs 2 times in the record"
    ):
        score_file(model, source, output)

    summary = score_file(model, source, output, options=SKIP_BAD_ROWS)
    records = read_jsonl(output)

    assert summary.unparsed == 1
    # The bad record stays whole, and JSON readers keep its last "text".
    assert [record.get("text") for record in records] == ["great fun", "dull", "dull"]
    assert records[1]["positive"] is None
    assert records[1]["error"].startswith("line 2: the field 'text' occurs 2 times")
    assert records[2]["id"] == 2


def test_jsonl_bad_first_record(model, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text(
        '{"text": "a", "text": "b"}\n'
        '{"text": "good film", "label": 1}\n'
        '{"text": "bad film", "label": 0}\n'
    )
    output = tmp_path / "out.jsonl"

    summary = score_file(model, source, output, options=SKIP_BAD_ROWS)
    records = read_jsonl(output)

    assert summary.unparsed == 1
    assert summary.scored == 2
    assert records[0]["predicted_error"].startswith("line 1: the field 'text'")
    assert [record.get("label") for record in records] == [None, 1, 0]
    assert all(record["predicted_positive"] is not None for record in records[1:])


def test_jsonl_invalid_line(model, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "great fun"}\n{"text": \n["not", "an object"]\n')

    with pytest.raises(DataError, match=r"in\.jsonl line 2: invalid JSON"):
        score_file(model, source, tmp_path / "out.jsonl")

    summary = score_file(model, source, tmp_path / "out.jsonl", options=SKIP_BAD_ROWS)
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").open()]
    assert summary.rows == 3
    assert summary.unparsed == 2
    score_keys = {"positive", "negative", "label", "error"}
    assert [record.keys() - score_keys for record in records] == [
        {"text"},
        set(),
        set(),
    ]
    texts = [
        record["error"].partition("; the text of the line: ")[2]
        for record in records[1:]
    ]
    assert [json.loads(text) for text in texts] == ['{"text": ', '["not", "an object"]']


def test_one_line_bad_record_text_kept(model, tmp_path):
    source = tmp_path / "in.csv"
    source.write_text('id,text\n1,good film\n2,"closed" late\n3,great fun\n')

    score_file(model, source, tmp_path / "out.csv", options=SKIP_BAD_ROWS)
    rows = read_csv(tmp_path / "out.csv")

    assert [row["id"] for row in rows] == ["1", "", "3"]
    reason, _, text = rows[1]["error"].partition("; the text of the line: ")
    assert reason.startswith("line 3: invalid record: ")
    assert json.loads(text) == '2,"closed" late'


def test_jsonl_to_csv_rejected(model, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "great fun"}\n')

    with pytest.raises(ValueError, match="write JSONL output"):
        score_file(model, source, tmp_path / "out.csv")


def test_csv_to_jsonl(model, tmp_path):
    source = write_csv(tmp_path / "in.csv", ["id", "text"], [["7", "great, fun"]])

    score_file(model, source, tmp_path / "out.jsonl")
    (record,) = [json.loads(line) for line in (tmp_path / "out.jsonl").open()]

    assert record["id"] == "7"
    assert record["text"] == "great, fun"
    assert record["label"] in ("positive", "negative")


def test_lines_keep_empty_lines(model, tmp_path):
    source = tmp_path / "in.txt"
    source.write_bytes(b"great fun\n\n   \r\na dull mess\r\nlast without newline")

    summary = score_file(model, source, tmp_path / "out.csv", chunk_rows=2)
    rows = read_csv(tmp_path / "out.csv")

    assert [row["text"] for row in rows] == [
        "great fun",
        "",
        "   ",
        "a dull mess",
        "last without newline",
    ]
    assert [bool(row["error"]) for row in rows] == [False, True, True, False, False]
    assert summary.rows == 5


def test_cp1252_input(model, tmp_path):
    source = tmp_path / "in.csv"
    source.write_bytes(b"text,id\ncaf\xe9 fun\x85 great,1\n")

    score_file(model, source, tmp_path / "out.csv")
    rows = read_csv(tmp_path / "out.csv")

    assert detect_encoding(source) == "cp1252"
    assert rows[0]["text"] == "caf\xe9 fun\u2026 great"
    assert rows[0]["error"] == ""


def test_utf8_bom_input(model, tmp_path):
    source = tmp_path / "in.csv"
    source.write_bytes(b"\xef\xbb\xbftext,id\ngreat fun,1\n")

    score_file(model, source, tmp_path / "out.csv")
    rows = read_csv(tmp_path / "out.csv")

    assert detect_encoding(source) == "utf-8-sig"
    assert list(rows[0])[:2] == ["text", "id"]


def test_invalid_byte_in_place(model, tmp_path):
    source = tmp_path / "in.csv"
    source.write_bytes(b"text,note\ngreat fun,ok\nbad \x81 byte,n\x81te\ndull,ok\n")

    score_file(model, source, tmp_path / "out.csv")
    rows = read_csv(tmp_path / "out.csv")

    assert rows[1]["error"] == "line 3: byte 0x81 is invalid in cp1252"
    assert rows[1]["text"] == "bad \ufffd byte"
    assert rows[1]["note"] == "n\ufffdte"
    assert rows[2]["label"] in ("positive", "negative")


def test_utf16_rejected(model, tmp_path):
    source = tmp_path / "in.csv"
    source.write_bytes("text\ngreat\n".encode("utf-16"))

    with pytest.raises(DataError, match="UTF-16"):
        score_file(model, source, tmp_path / "out.csv")


def test_output_is_input(model, tmp_path):
    source = write_csv(tmp_path / "in.csv", ["text"], [["great fun"]])

    with pytest.raises(ValueError, match="is the input file"):
        score_file(model, source, source)


def test_stream_output_text(model, tmp_path):
    source = write_csv(tmp_path / "in.csv", ["text"], [["great fun"], [""]])
    output = io.StringIO()

    score_file(model, source, output)
    lines = output.getvalue().splitlines()

    assert lines[0].endswith('  "great fun"')
    assert lines[1] == f'    n/a           ""  (line 3: {EMPTY_REVIEW})'


class _WriteOnly:
    """A stream with nothing but a write method."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)


class _ResetConnection(io.StringIO):
    def write(self, text: str) -> int:
        raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")


def test_stream_output_needs_only_write(model, tmp_path):
    source = write_csv(tmp_path / "in.csv", ["text"], [["great fun"], ["dull"]])
    output = _WriteOnly()

    summary = score_file(model, source, output, output_format="csv")

    assert summary.rows == 2
    assert "".join(output.parts).splitlines()[0] == (
        "text,positive,negative,label,error"
    )


def test_stream_output_write_failure(model, tmp_path):
    source = write_csv(tmp_path / "in.csv", ["text"], [["great fun"]])

    with pytest.raises(DataError) as error:
        score_file(model, source, _ResetConnection())

    assert str(error.value) == (
        "the output stream: cannot write the output: Connection reset by peer; "
        "the output stream may contain part of the results"
    )
    assert isinstance(error.value.__cause__, ConnectionResetError)


def test_progress_hidden_off_terminal(model, tmp_path, capsys):
    source = write_csv(tmp_path / "in.csv", ["text"], [["great fun"]] * 5)

    score_file(model, source, tmp_path / "out.csv")

    assert "rows" not in capsys.readouterr().err


def test_progress_shown_on_request(model, tmp_path, capsys):
    source = write_csv(tmp_path / "in.csv", ["text"], [["great fun"]] * 5)

    score_file(model, source, tmp_path / "out.csv", progress=True)

    err = capsys.readouterr().err

    # The total comes from the file's lines before the first row is scored.
    assert "0/5 " in err
    assert "5/5 " in err


@pytest.mark.parametrize("line_end", ["\n", "\r"])
def test_progress_total_counts_last_line(model, tmp_path, capsys, line_end):
    source = tmp_path / "in.txt"
    source.write_text(line_end.join(["great fun", "dull mess", "witty"]))

    score_file(model, source, tmp_path / "out.csv", progress=True)

    assert "0/3 " in capsys.readouterr().err


class WatchingBackend:
    """Wraps a backend and records how far the input and output files are."""

    def __init__(self, backend, input_path: Path, output_dir: Path) -> None:
        self.name = backend.name
        self._backend = backend
        self._input_path = input_path.resolve()
        self._output_dir = output_dir
        self.input_positions: list[int] = []
        self.output_sizes: list[int] = []

    def probabilities(self, token_ids, lengths):
        self.input_positions.append(self._input_position())
        temporary = list(self._output_dir.glob(".out.csv.*.tmp"))
        self.output_sizes.append(temporary[0].stat().st_size if temporary else -1)
        return self._backend.probabilities(token_ids, lengths)

    def _input_position(self) -> int:
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if target == str(self._input_path):
                with open(f"/proc/self/fdinfo/{fd}") as info:
                    for line in info:
                        if line.startswith("pos:"):
                            return int(line.split()[1])
        return -1


@pytest.mark.skipif(not Path("/proc/self/fdinfo").is_dir(), reason="needs Linux /proc")
def test_reads_and_writes_incrementally(model_dir, tmp_path):
    model = SentimentModel.load(model_dir, backend="onnx")
    # About 2 MB, far more than the reader's buffer and the chunks in flight.
    rows = [[str(i), REVIEWS[i % len(REVIEWS)] + " padding" * 20] for i in range(8000)]
    source = write_csv(tmp_path / "in.csv", ["id", "text"], rows)
    size = source.stat().st_size
    watcher = WatchingBackend(model.backend, source, tmp_path)
    model.backend = watcher

    summary = score_file(model, source, tmp_path / "out.csv", chunk_rows=200)

    assert summary.rows == 8000
    assert 0 < watcher.input_positions[0] < size / 4
    assert watcher.output_sizes[0] == 0
    assert watcher.output_sizes[-1] > 0


def test_read_error_restores_interpreter(model, tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("id,text\n" + "1,great fun\n" * 50 + "2,too,many\n")
    sys.setswitchinterval(0.003)
    try:
        with pytest.raises(DataError, match="line 52"):
            score_file(model, source, tmp_path / "out.csv", chunk_rows=7)

        assert sys.getswitchinterval() == pytest.approx(0.003)
    finally:
        sys.setswitchinterval(0.005)
    assert gc.isenabled()
    assert os.listdir(tmp_path) == ["in.csv"]


class SettingsBackend:
    """Backend wrapper that records the interpreter settings during passes."""

    def __init__(self, backend) -> None:
        self.name = backend.name
        self._backend = backend
        self.parallel_batches = getattr(backend, "parallel_batches", 1)
        self.seen: set[tuple[float, bool]] = set()

    def probabilities(self, token_ids, lengths):
        self.seen.add((sys.getswitchinterval(), gc.isenabled()))
        return self._backend.probabilities(token_ids, lengths)


def test_interpreter_tuned_only_while_scoring(model_dir, tmp_path):
    model = SentimentModel.load(model_dir, backend="onnx", threads=2)
    model.backend = SettingsBackend(model.backend)
    sources = [
        write_csv(tmp_path / f"in{i}.csv", ["text"], [[text] for text in REVIEWS * 20])
        for i in range(2)
    ]
    before = sys.getswitchinterval()

    # Two runs at once: the settings are restored only when both have ended.
    threads = [
        threading.Thread(
            target=score_file,
            args=(model, source, tmp_path / f"out{i}.csv"),
            kwargs={"chunk_rows": 16},
        )
        for i, source in enumerate(sources)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    ((interval, collecting),) = model.backend.seen
    assert interval == pytest.approx(scoring.SWITCH_INTERVAL_SECONDS)
    assert not collecting
    assert sys.getswitchinterval() == before
    assert gc.isenabled()
    for i in range(2):
        assert len(read_csv(tmp_path / f"out{i}.csv")) == len(REVIEWS) * 20


def test_first_chunk_is_small(model, tmp_path, monkeypatch):
    monkeypatch.setattr(scoring, "FIRST_CHUNK_ROWS", 2)
    texts = [REVIEWS[i % len(REVIEWS)] for i in range(13)]
    source = write_csv(tmp_path / "in.csv", ["text"], [[text] for text in texts])
    sizes = []
    encode_packed = model.encoder.encode_packed
    monkeypatch.setattr(
        model.encoder,
        "encode_packed",
        lambda batch: sizes.append(len(batch)) or encode_packed(batch),
    )

    score_file(model, source, tmp_path / "out.csv", chunk_rows=5)

    assert sizes == [2, 5, 5, 1]
    assert [row["text"] for row in read_csv(tmp_path / "out.csv")] == texts


def test_cli_csv_to_csv(model_dir, tmp_path):
    source = write_csv(
        tmp_path / "reviews.csv",
        ["id", "text"],
        [["1", "great fun, truly"], ["2", ""], ["3", "dull, boring mess"]],
    )

    status = main(
        ["predict", "--model", str(model_dir), "--input", str(source)]
        + ["--output", str(tmp_path / "scored.csv"), "--chunk-size", "2"]
    )
    rows = read_csv(tmp_path / "scored.csv")

    assert status == 0
    assert [row["id"] for row in rows] == ["1", "2", "3"]
    assert rows[1]["error"] == f"line 3: {EMPTY_REVIEW}"


def test_cli_backends_same_file(model_dir, tmp_path):
    source = write_csv(tmp_path / "reviews.csv", ["text"], [[text] for text in REVIEWS])
    scores = {}
    for backend in ("onnx", "torch"):
        output = tmp_path / f"{backend}.csv"
        status = main(
            ["predict", "--model", str(model_dir), "--backend", backend]
            + ["--input", str(source), "--output", str(output)]
        )
        assert status == 0
        scores[backend] = np.array([float(row["positive"]) for row in read_csv(output)])

    assert np.max(np.abs(scores["onnx"] - scores["torch"])) <= 1e-5


# Runs predict and writes the process's peak resident memory in KiB to stderr
# after it. VmHWM counts from the exec, unlike ru_maxrss, which a child
# inherits from its parent.
PEAK_MEMORY_SCRIPT = """
import sys

from sentiment_lstm.cli import main

status = main(sys.argv[1:])
with open("/proc/self/status") as status_file:
    peak = next(line for line in status_file if line.startswith("VmHWM:"))
print(peak.split()[1], file=sys.stderr)
sys.exit(status)
"""


def stdin_peak_memory_kib(model_dir: Path, source: Path) -> int:
    with open(source, "rb") as stdin:
        completed = subprocess.run(
            [sys.executable, "-c", PEAK_MEMORY_SCRIPT, "-q", "predict"]
            + ["--model", str(model_dir), "--format", "jsonl"],
            stdin=stdin,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            check=True,
        )
    return int(completed.stderr.split()[-1])


@pytest.mark.skipif(
    not os.path.exists("/proc/self/status"), reason="reads VmHWM from Linux /proc"
)
def test_cli_stdin_memory_flat(model_dir, tmp_path):
    small = tmp_path / "small.txt"
    small.write_text("".join(f"great fun {i % 97}\n" for i in range(5_000)))
    large = tmp_path / "large.txt"
    large.write_text("".join(f"great fun {i % 97}\n" for i in range(500_000)))

    growth = stdin_peak_memory_kib(model_dir, large) - stdin_peak_memory_kib(
        model_dir, small
    )

    # Holding all 500,000 results at once took about 170 MiB more.
    assert growth < 64 * 1024, growth


def test_cli_stdin_matches_input_file(model_dir, tmp_path):
    source = tmp_path / "reviews.txt"
    source.write_bytes(
        "\n".join([*REVIEWS, "", "caf\u00e9 \u2019 great"]).encode("cp1252")
        + b"\nbad \x81 byte\n"
    )
    command = [sys.executable, "-m", "sentiment_lstm", "-q", "predict"]
    command += ["--model", str(model_dir), "--format", "jsonl"]
    outputs = []
    for arguments, stdin_path in ((["--input", str(source)], os.devnull), ([], source)):
        with open(stdin_path, "rb") as stdin:
            completed = subprocess.run(
                command + arguments, stdin=stdin, capture_output=True, check=True
            )
        outputs.append(completed.stdout.decode("utf-8"))

    assert outputs[0] == outputs[1]
    assert len(outputs[1].splitlines()) == len(REVIEWS) + 3


def test_cli_stdin_input_format_csv(model_dir):
    completed = subprocess.run(
        [sys.executable, "-m", "sentiment_lstm", "-q", "predict"]
        + ["--model", str(model_dir), "--input-format", "csv", "--format", "csv"],
        input=b'id,text\n1,great fun\n2,"a dull,\nboring mess"\n',
        capture_output=True,
        check=True,
    )
    rows = list(csv.DictReader(io.StringIO(completed.stdout.decode(), newline="")))

    assert [row["id"] for row in rows] == ["1", "2"]
    assert [row["text"] for row in rows] == ["great fun", "a dull,\nboring mess"]
    assert all(row["label"] in ("positive", "negative") for row in rows)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--input-format", "posneg"], "stdin cannot be read as posneg"),
        (["--text-column", "review"], "stdin: --text-column only applies"),
    ],
)
def test_cli_stdin_options_rejected(model_dir, arguments, message):
    completed = subprocess.run(
        [sys.executable, "-m", "sentiment_lstm", "-q", "predict"]
        + ["--model", str(model_dir), *arguments],
        input=b"great fun\n",
        capture_output=True,
    )

    assert completed.returncode in (1, 2)
    assert message in completed.stderr.decode()
    assert completed.stdout == b""


def test_cli_jsonl_to_csv_error(model_dir, tmp_path, capsys):
    source = tmp_path / "reviews.jsonl"
    source.write_text('{"text": "great fun"}\n')

    status = main(
        ["predict", "--model", str(model_dir), "--input", str(source)]
        + ["--output", str(tmp_path / "scored.csv")]
    )

    assert status == 1
    assert "write JSONL output" in capsys.readouterr().err


def test_repeated_header_to_jsonl(model, tmp_path):
    source = write_csv(tmp_path / "in.csv", ["text", "note", "note"], [["a", "1", "2"]])

    with pytest.raises(DataError, match="repeats the column names 'note'"):
        score_file(model, source, tmp_path / "out.jsonl")

    assert not (tmp_path / "out.jsonl").exists()


def test_cli_posneg_input(model_dir, tmp_path, capsys):
    (tmp_path / "tiny.pos").write_text("great fun\n")
    (tmp_path / "tiny.neg").write_text("a dull mess\n")

    status = main(
        ["predict", "--model", str(model_dir), "--input", str(tmp_path / "tiny.pos")]
        + ["--format", "tsv"]
    )
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out), delimiter="\t"))

    assert status == 0
    assert [row["text"] for row in rows] == ["a dull mess", "great fun"]


def test_jsonl_later_key_clash(model, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "great fun"}\n{"text": "dull", "positive": true}\n')

    with pytest.raises(DataError, match="line 2: the record already has the key"):
        score_file(model, source, tmp_path / "out.jsonl")


def test_jsonl_both_score_key_forms_rejected(model, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text(
        '{"text": "good film", "label": "positive", "predicted_label": "x"}\n'
    )

    with pytest.raises(DataError, match="keys named like both"):
        score_file(model, source, tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()


def test_jsonl_clash_before_first_text_record(model, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"id": 1, "label": "positive"}\n{"text": "a gorgeous film"}\n')

    summary = score_file(model, source, tmp_path / "out.jsonl")
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    first = json.loads(lines[0], object_pairs_hook=lambda pairs: pairs)

    assert summary.rows == 2
    # The record's own label stays, once, and the scores get their own keys.
    assert [key for key, _ in first].count("label") == 1
    assert dict(first)["label"] == "positive"
    assert (
        dict(first)["predicted_error"]
        == "line 1: no text field among the keys: 'id', 'label'"
    )
    assert json.loads(lines[1])["predicted_label"] in ("positive", "negative")


def test_bare_carriage_return_row_kept_whole(model, tmp_path):
    source = tmp_path / "in.csv"
    source.write_bytes(b"id,text\n1,great\rfun\n2,dull\r3,x\n4,fine film\n")

    with pytest.raises(DataError, match=r"line 2: a carriage return"):
        score_file(model, source, tmp_path / "out.csv")
    summary = score_file(model, source, tmp_path / "out.csv", options=SKIP_BAD_ROWS)
    rows = read_csv(tmp_path / "out.csv")

    assert [row["id"] for row in rows] == ["", "", "4"]
    assert [row["error"][:7] for row in rows] == ["line 2:", "line 3:", ""]
    assert summary.unparsed == 2


def test_old_mac_line_ends_scored(model, tmp_path):
    source = tmp_path / "in.csv"
    source.write_bytes(b'id,text\r1,great fun\r2,"dull\rslow"\r')

    score_file(model, source, tmp_path / "out.csv")
    rows = read_csv(tmp_path / "out.csv")

    assert [row["text"] for row in rows] == ["great fun", "dull\rslow"]
    assert all(row["label"] for row in rows)


def test_text_file_carriage_returns_warned(model, tmp_path, caplog):
    source = tmp_path / "in.txt"
    source.write_bytes(b"great fun\rawful mess\nok film\r\ndull\r\n")

    with caplog.at_level(logging.WARNING, logger="sentiment_lstm"):
        summary = score_file(model, source, tmp_path / "out.jsonl")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]

    assert summary.rows == 3
    assert warnings == [
        f"1 line of {source} contains a carriage return (\\r) that does not end "
        "the line, which stays inside the review; if these are line breaks, "
        "convert them to \\n"
    ]


@pytest.mark.parametrize("chunk_rows", [1, 2, 8192])
def test_jsonl_score_keys_independent_of_chunks(model, tmp_path, chunk_rows):
    source = tmp_path / "in.jsonl"
    source.write_text('\n\n\n{"text": "great movie", "label": "positive"}\n')

    score_file(model, source, tmp_path / "out.jsonl", chunk_rows=chunk_rows)
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").open()]

    assert len(records) == 4
    assert all("predicted_label" in record for record in records)
    assert not any("error" in record for record in records)


def test_stray_byte_in_utf8_input(model, tmp_path):
    source = tmp_path / "in.csv"
    source.write_bytes(
        "text,id\ncaf\u00e9 fun,1\n".encode("utf-8")
        + b"na\xefve plot,2\n"
        + "cr\u00e8me br\u00fbl\u00e9e,3\n".encode("utf-8")
    )

    summary = score_file(model, source, tmp_path / "out.csv")
    rows = read_csv(tmp_path / "out.csv")

    assert detect_encoding(source) == "utf-8"
    assert summary.encoding == "utf-8"
    assert [row["text"] for row in rows] == [
        "caf\u00e9 fun",
        "na\ufffdve plot",
        "cr\u00e8me br\u00fbl\u00e9e",
    ]
    assert [row["error"] for row in rows] == [
        "",
        "line 3: byte 0xef is invalid in UTF-8",
        "",
    ]


def test_nul_byte_row_unscored(model, tmp_path):
    source = tmp_path / "in.csv"
    source.write_bytes(b"text,id\ngreat fun,1\nbad\x00 movie,2\n")

    score_file(model, source, tmp_path / "out.csv")
    rows = read_csv(tmp_path / "out.csv")

    assert [row["error"] for row in rows] == [
        "",
        "line 3: byte 0x00 (NUL) is invalid in text",
    ]


def test_unscored_row_after_multiline_field(model, tmp_path):
    # The output row is the third, but the row starts on line 5 of the input.
    source = tmp_path / "in.csv"
    source.write_text('id,text\n1,"two\nlines"\n2,fine\n3,\n')

    score_file(model, source, tmp_path / "out.csv")
    rows = read_csv(tmp_path / "out.csv")

    assert [row["id"] for row in rows] == ["1", "2", "3"]
    assert rows[2]["error"] == f"line 5: {EMPTY_REVIEW}"


def test_invalid_byte_outside_review_warns(model, tmp_path, caplog):
    source = tmp_path / "in.csv"
    source.write_bytes(
        b"id,city,text\n1,Z\xfcrich,caf\xc3\xa9 cr\xc3\xa8me br\xc3\xbbl\xc3\xa9e\n"
        b"2,Paris,dull\n3,G\xe9n\xe8ve,na\xc3\xafve plot d\xc3\xa9j\xc3\xa0 vu\n"
    )
    caplog.set_level("WARNING")

    summary = score_file(model, source, tmp_path / "out.csv")
    rows = read_csv(tmp_path / "out.csv")

    assert summary.scored == 3
    assert [row["error"] for row in rows] == ["", "", ""]
    assert rows[0]["city"] == "Z\ufffdrich"
    assert "2 scored rows of " in caplog.text
    assert "have invalid bytes outside the review, written as U+FFFD" in caplog.text
    assert "line 2 (column 'city'), line 4 (column 'city')" in caplog.text


def test_invalid_byte_outside_jsonl_review_warns(model, tmp_path, caplog):
    source = tmp_path / "in.jsonl"
    source.write_bytes(
        b'{"city": "Z\xfcrich", "text": "caf\xc3\xa9 cr\xc3\xa8me fun"}\n'
        b'{"text": "na\xc3\xafve plot"}\n'
    )
    caplog.set_level("WARNING")

    summary = score_file(model, source, tmp_path / "out.jsonl")

    assert summary.scored == 2
    assert "1 scored row of " in caplog.text
    assert "has invalid bytes outside the review" in caplog.text
    assert "U+FFFD in the output: line 1;" in caplog.text


def test_replaced_bytes_only_scored_rows(model, tmp_path, caplog):
    # Rows left unscored have an error already, and a byte in the review
    # itself makes the row unscored, so neither is counted.
    source = tmp_path / "in.csv"
    source.write_bytes(
        b"i\x81d,text\n"
        b"1\x81,caf\xc3\xa9 cr\xc3\xa8me br\xc3\xbbl\xc3\xa9e na\xc3\xafve\n"
        b"2,bad \x81 film\n3\x81,bad \x81 film\n4\x81,\n5\x81,<br />\n"
    )
    caplog.set_level("WARNING")

    summary = score_file(model, source, tmp_path / "out.csv")

    assert summary.scored == 1
    assert "1 scored row of " in caplog.text
    assert "written as U+FFFD in the output: line 2 (column 1);" in caplog.text
    assert "has invalid bytes in column 1, written as U+FFFD" in caplog.text


def test_jsonl_escapes_are_not_bytes(model, tmp_path):
    # A file with an invalid byte on another line checks its reviews, but
    # escapes in a line without invalid bytes are text.
    source = tmp_path / "in.jsonl"
    source.write_bytes(
        b'{"text": "great\\u0000 fun"}\n'
        b'{"text": "great \\udc81 fun"}\n'
        b'{"text": "dull \x81 mess"}\n'
    )

    summary = score_file(model, source, tmp_path / "out.jsonl")
    records = read_jsonl(tmp_path / "out.jsonl")

    assert summary.scored == 2
    assert records[0]["label"] in ("positive", "negative")
    assert records[1]["label"] in ("positive", "negative")
    assert records[2]["error"] == "line 3: byte 0x81 is invalid in cp1252"


def test_valid_file_no_replaced_bytes_warning(model, tmp_path, caplog):
    source = tmp_path / "in.csv"
    source.write_text("id,city,text\n1,Z\u00fcrich,great fun\n")
    caplog.set_level("WARNING")

    score_file(model, source, tmp_path / "out.csv")

    assert "U+FFFD" not in caplog.text


def test_jsonl_repeated_text_key_kept(model, tmp_path):
    source = tmp_path / "in.jsonl"
    lines = [
        '{"id": 7, "text": "good", "text": "bad"}',
        '{"id": 8, "text": "great fun"}',
        '{"id": 9, "text": "a", "text": "b", "label": 1}',
    ]
    source.write_text("\n".join(lines) + "\n")

    summary = score_file(model, source, tmp_path / "out.jsonl", options=SKIP_BAD_ROWS)
    written = (tmp_path / "out.jsonl").read_text().splitlines()

    assert summary.unparsed == 2
    # The record stays whole, repeated key included.
    assert written[0].startswith('{"id": 7, "text": "good", "text": "bad", ')
    assert json.loads(written[0])["error"] == (
        "line 1: the field 'text' occurs 2 times in the record"
    )
    assert json.loads(written[1])["id"] == 8
    # A record with a score key would repeat it, so only the scores are kept.
    assert "id" not in json.loads(written[2])
    assert json.loads(written[2])["error"].startswith("line 3: the field 'text'")


def test_jsonl_text_key_case_per_record(model, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text(
        '{"Text": "great fun"}\n{"text": "dull"}\n{"TEXT ": "x", "text": "y"}\n'
    )

    summary = score_file(model, source, tmp_path / "out.jsonl")
    records = read_jsonl(tmp_path / "out.jsonl")

    assert summary.scored == 2
    assert records[1]["positive"] == pytest.approx(
        expected_positive(model, ["dull"])[0], abs=1e-6
    )
    assert records[2]["error"] == (
        "line 3: missing text field 'Text': the keys 'TEXT ', 'text' match it "
        "when case is ignored, so none is used"
    )


def test_jsonl_carriage_return_line_ends(model, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_bytes(b'{"id": 1, "text": "great fun"}\r{"id": 2, "text": "dull"}\r')

    summary = score_file(model, source, tmp_path / "out.jsonl")
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").open()]

    assert summary.rows == 2
    assert summary.scored == 2
    assert [record["id"] for record in records] == [1, 2]


def test_utf16_without_bom_rejected(model, tmp_path):
    source = tmp_path / "in.txt"
    source.write_bytes("great fun\na dull mess\n".encode("utf-16-le"))

    with pytest.raises(DataError, match="UTF-16 .*without a byte order mark"):
        score_file(model, source, tmp_path / "out.csv")


def test_carriage_return_text_lines(model, tmp_path):
    source = tmp_path / "in.txt"
    source.write_bytes(b"great fun\ra dull \x85 mess\r\rlast")

    score_file(model, source, tmp_path / "out.csv")
    rows = read_csv(tmp_path / "out.csv")

    assert [row["text"] for row in rows] == [
        "great fun",
        "a dull \u2026 mess",
        "",
        "last",
    ]
    assert [bool(row["error"]) for row in rows] == [False, False, True, False]


@pytest.mark.parametrize("cut_short", [False, True])
def test_interrupted_write_named(cut_short):
    class Stream(io.StringIO):
        def write(self, text: str) -> int:
            if text == "row 2\n":
                # Ctrl-C arrives during a write to a slow reader's pipe.
                raise KeyboardInterrupt
            return super().write(text)

    def write(stream) -> None:
        stream.write("row 1\n")
        if not cut_short:
            # Ctrl-C arrives between two writes.
            raise KeyboardInterrupt
        stream.write("row 2\n")

    with pytest.raises(KeyboardInterrupt) as stopped:
        scoring.write_to_stream("out", Stream(), write)

    assert str(stopped.value) == (
        "stopped; out may contain part of the results, and its last line may be "
        "cut off"
        if cut_short
        else "stopped; what was written to out before it stays there"
    )


@pytest.mark.parametrize(
    "number, advice",
    [
        (errno.ENOSPC, "free some disk space"),
        (errno.EDQUOT, "free some disk space"),
        (errno.EROFS, "Read-only file system; write the output to another file"),
        (errno.EFBIG, "ulimit -f"),
    ],
)
def test_output_error_advice(tmp_path, number, advice):
    from sentiment_lstm.scoring import output_error_message

    error = OSError(number, os.strerror(number))
    message = output_error_message(tmp_path / "out.csv", error)

    assert message.startswith(f"{tmp_path / 'out.csv'}: cannot write the output: ")
    assert advice in message


def test_output_error_without_advice(tmp_path):
    from sentiment_lstm.scoring import output_error_message

    error = OSError(errno.EIO, os.strerror(errno.EIO))

    assert output_error_message(tmp_path / "out.csv", error) == (
        f"{tmp_path / 'out.csv'}: cannot write the output: {os.strerror(errno.EIO)}"
    )


def test_jsonl_error_invalid_byte_replaced(model, tmp_path):
    source = tmp_path / "in.csv"
    rows = b"".join(b"%d,caf\xc3\xa9 good\n" % number for number in range(50))
    source.write_bytes(b"id,text\n" + rows + b'99,"broken \xff quote\n100,nice\n')
    output = tmp_path / "out.jsonl"

    score_file(model, source, output, options=SKIP_BAD_ROWS)
    text = output.read_text(encoding="utf-8")
    records = [json.loads(line) for line in text.splitlines()]

    assert "\\udcff" not in text
    assert records[50]["error"].endswith(
        'the text of the line: "99,\\"broken \ufffd quote"'
    )
    assert records[51]["text"] == "nice"


def test_long_unparsed_line_cut_in_error(model, tmp_path, monkeypatch):
    monkeypatch.setattr(scoring, "_LINE_TEXT_CHARS", 20)
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "great fun"}\n{"text": "' + "x" * 50 + "\n")
    output = tmp_path / "out.jsonl"

    score_file(model, source, output, options=SKIP_BAD_ROWS)
    records = [json.loads(line) for line in output.read_text().splitlines()]

    reason, _, text = records[1]["error"].partition(
        "; the first 20 of the line's 60 characters: "
    )
    assert reason.startswith("line 2: invalid JSON")
    assert json.loads(text) == '{"text": "' + "x" * 10
