"""Tests on the real rt-polarity and Netflix review files; skipped when absent."""

from collections import Counter
from pathlib import Path

from sentiment_lstm.data import ReadOptions, read_examples, read_texts


def test_rt_polarity_line_counts(real_rt_polarity: Path) -> None:
    result = read_examples(real_rt_polarity)
    counts = Counter(example.label for example in result.examples)

    assert counts[0] == 5331
    assert counts[1] == 5331
    assert result.bad_rows == []
    assert [path.name for path in result.files] == [
        "rt-polarity.neg",
        "rt-polarity.pos",
    ]


def test_rt_polarity_ellipsis_decoded(real_rt_polarity: Path) -> None:
    result = read_examples(real_rt_polarity / "rt-polarity.pos")
    with_ellipsis = [e for e in result.examples if "\u2026" in e.text]

    assert len(with_ellipsis) > 0
    assert all("\x85" not in example.text for example in result.examples)
    assert result.examples[-1].line == 5331


def test_netflix_star_labels(real_netflix_csv: Path) -> None:
    result = read_examples(real_netflix_csv, ReadOptions(stars=True))
    counts = Counter(example.label for example in result.examples)

    assert counts[0] == 1733 + 290
    assert counts[1] == 273 + 1453
    assert result.left_out_by_stars == 250
    assert result.bad_rows == []


def test_netflix_every_row_for_prediction(real_netflix_csv: Path) -> None:
    result = read_texts(real_netflix_csv)

    assert len(result.examples) == 3999
    assert result.bad_rows == []


def test_netflix_line_numbers(real_netflix_csv: Path) -> None:
    result = read_examples(real_netflix_csv, ReadOptions(stars=True))
    physical_lines = real_netflix_csv.read_text(encoding="utf-8").split("\n")

    mismatched = []
    for example in result.examples:
        start = example.text.split("\n")[0][:20].replace('"', '""')
        if start not in physical_lines[example.line - 1]:
            mismatched.append(example)

    assert len(result.examples) == 3749
    assert mismatched == []


def test_rt_polarity_decoded_as_cp1252(real_rt_polarity: Path) -> None:
    result = read_examples(real_rt_polarity)
    expected = []
    for name in ("rt-polarity.neg", "rt-polarity.pos"):
        data = (real_rt_polarity / name).read_bytes()
        expected += [line.strip() for line in data.decode("cp1252").split("\n")[:-1]]
    texts = [example.text for example in result.examples]

    assert texts == expected
    assert sum("\u00e9" in text for text in texts) > 0
    assert sum("\u2026" in text for text in texts) > 0
    assert sum("\u2013" in text for text in texts) > 0
