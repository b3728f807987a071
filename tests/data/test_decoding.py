"""Tests for the choice of encoding: UTF-16 and NUL bytes, mostly valid UTF-8."""

import logging
from pathlib import Path

import pytest

from sentiment_lstm.data import DataError, ReadOptions, read_examples, read_texts
from sentiment_lstm.data.decoding import EncodingScan, decode_bytes

POSITIVE = ["a warm and funny film", "great acting", "truly moving"]
NEGATIVE = ["a dull mess", "flat and lifeless", "badly written"]


def write_pair(folder: Path, neg: bytes, pos: bytes) -> Path:
    (folder / "reviews.neg").write_bytes(neg)
    (folder / "reviews.pos").write_bytes(pos)
    return folder / "reviews.pos"


def lines(texts: list[str]) -> str:
    return "".join(f"{text}\n" for text in texts)


@pytest.mark.parametrize(
    ("codec", "order"), [("utf-16-le", "little-endian"), ("utf-16-be", "big-endian")]
)
def test_utf16_without_bom_rejected(tmp_path: Path, codec: str, order: str) -> None:
    pos = write_pair(
        tmp_path, lines(NEGATIVE).encode("utf-8"), lines(POSITIVE).encode(codec)
    )

    with pytest.raises(DataError) as excinfo:
        read_examples(pos)

    message = str(excinfo.value)
    assert message.startswith(f"{pos}: ")
    assert f"looks like UTF-16 ({order}) without a byte order mark" in message
    assert "save it as UTF-8" in message


CHINESE = ["这部电影非常好看", "演员表演出色，故事感人", "剧情糟糕，演技很差"]


@pytest.mark.parametrize("line_end", ["\n", "\r\n"])
@pytest.mark.parametrize(
    ("codec", "order"), [("utf-16-le", "little-endian"), ("utf-16-be", "big-endian")]
)
def test_utf16_chinese_without_bom_rejected(
    tmp_path: Path, codec: str, order: str, line_end: str
) -> None:
    text = "".join(f"{line}{line_end}" for line in CHINESE)
    pos = write_pair(tmp_path, lines(NEGATIVE).encode("utf-8"), text.encode(codec))
    # few NUL bytes: only the line breaks have one
    assert pos.read_bytes().count(0) == len(CHINESE) * len(line_end)

    with pytest.raises(DataError) as excinfo:
        read_examples(pos)

    message = str(excinfo.value)
    assert message.startswith(f"{pos}: ")
    assert f"looks like UTF-16 ({order}) without a byte order mark" in message
    assert "3 of its line breaks in the first" in message
    assert "save it as UTF-8" in message


def test_nul_after_line_feed_bad_row(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    path.write_bytes(b"text,label\ngood,1\n\x00bad,0\nfine,1\n")

    result = read_examples(path, ReadOptions(skip_bad_rows=True))

    assert [example.text for example in result.examples] == ["good", "fine"]
    assert [row.line for row in result.bad_rows] == [3]


def test_utf16_csv_without_bom_rejected(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    path.write_bytes("text,label\ngreat,1\nbad,0\n".encode("utf-16-le"))

    with pytest.raises(DataError, match="UTF-16 .*without a byte order mark"):
        read_examples(path)


def test_binary_file_rejected(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    path.write_bytes(b"text,label\n" + b"\x00\x00\x01\x02" * 64)

    with pytest.raises(DataError, match="looks like a binary file, not text"):
        read_examples(path)


def test_nul_byte_in_csv_row(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    path.write_bytes(b"text,label\ngood movie,1\nbad\x00 movie,0\ngreat,1\n")

    with pytest.raises(DataError) as excinfo:
        read_examples(path)
    result = read_examples(path, ReadOptions(skip_bad_rows=True))

    assert f"{path} line 3: byte 0x00 (NUL) is invalid in text" in str(excinfo.value)
    assert [example.text for example in result.examples] == ["good movie", "great"]
    assert [(row.line, row.reason) for row in result.bad_rows] == [
        (3, "byte 0x00 (NUL) is invalid in text")
    ]


def test_nul_byte_in_cp1252_line_file(tmp_path: Path) -> None:
    pos = write_pair(tmp_path, b"dull \x85 slow\n", b"caf\xe9 fun\nodd\x00 line\n")

    result = read_examples(pos, ReadOptions(skip_bad_rows=True))

    assert [example.text for example in result.examples] == [
        "dull \u2026 slow",
        "caf\u00e9 fun",
    ]
    assert [(row.source, row.line) for row in result.bad_rows] == [(str(pos), 2)]
    assert "0x00" in result.bad_rows[0].reason


def mostly_utf8_csv(tmp_path: Path) -> Path:
    rows = [f"caf\u00e9 review {i},{i % 2}\n".encode("utf-8") for i in range(6)]
    rows[2] = b"na\xefve but fine,1\n"
    path = tmp_path / "reviews.csv"
    path.write_bytes(b"text,label\n" + b"".join(rows))
    return path


def test_stray_byte_in_utf8_names_line(tmp_path: Path) -> None:
    path = mostly_utf8_csv(tmp_path)

    with pytest.raises(DataError) as excinfo:
        read_examples(path)

    assert f"{path} line 4: byte 0xef is invalid in UTF-8" in str(excinfo.value)


def test_stray_byte_in_utf8_keeps_accents(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = mostly_utf8_csv(tmp_path)

    with caplog.at_level(logging.INFO, logger="sentiment_lstm.data"):
        result = read_examples(path, ReadOptions(skip_bad_rows=True))

    assert len(result.examples) == 5
    assert all(
        example.text.startswith("caf\u00e9 review") for example in result.examples
    )
    assert [row.line for row in result.bad_rows] == [4]
    assert "so it is decoded as UTF-8" in caplog.text
    assert "invalid bytes: 1, valid multi-byte UTF-8 characters: 5" in caplog.text


def test_stray_byte_in_utf8_kept_unscored(tmp_path: Path) -> None:
    path = tmp_path / "input.txt"
    path.write_bytes(
        "caf\u00e9 one\n".encode("utf-8")
        + b"na\xefve\n"
        + "cr\u00e8me two\n".encode("utf-8")
    )

    result = read_texts(path, ReadOptions(keep_unscored=True))

    assert [example.text for example in result.examples] == [
        "caf\u00e9 one",
        "cr\u00e8me two",
    ]
    assert [(row.line, row.reason) for row in result.unscored] == [
        (2, "byte 0xef is invalid in UTF-8")
    ]


def test_high_bytes_without_utf8_are_cp1252(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pos = write_pair(tmp_path, b"bad \x93film\x94 .\n", b"caf\xe9 \x85 good .\n")

    with caplog.at_level(logging.INFO, logger="sentiment_lstm.data"):
        result = read_examples(pos)

    assert [example.text for example in result.examples] == [
        "bad \u201cfilm\u201d .",
        "caf\u00e9 \u2026 good .",
    ]
    assert "so it is decoded as cp1252" in caplog.text


def test_cp1252_with_accidental_utf8_pair() -> None:
    # "\xc3\xa9" is also valid UTF-8 for "é", but the three other high bytes
    # are invalid in UTF-8, so the file stays cp1252.
    data = b"\xc3\xa9t\xe9 \x85 na\xefve caf\xe9\n"

    decoded = decode_bytes(data, "reviews.txt")

    assert decoded.encoding == "cp1252"
    assert decoded.text == "\u00c3\u00a9t\u00e9 \u2026 na\u00efve caf\u00e9\n"


def test_scan_across_blocks_matches_whole_decode() -> None:
    data = ("caf\u00e9 cr\u00e8me " * 3).encode("utf-8") + b"\xff end\n"
    scan = EncodingScan("reviews.txt")
    # Each block boundary falls inside a two-byte character.
    for start in range(0, len(data), 4):
        scan.feed(data[start : start + 4])

    encoding = scan.result()

    assert (encoding.name, encoding.errors) == ("utf-8", "surrogateescape")
    assert decode_bytes(data, "reviews.txt").encoding == "utf-8"


def test_utf16_file_in_folder_is_bad_row(tmp_path: Path) -> None:
    for name, text in [
        ("pos/a.txt", "good"),
        ("pos/b.txt", "fine"),
        ("neg/c.txt", "bad"),
    ]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    (tmp_path / "pos" / "u16.txt").write_text("a great film", encoding="utf-16")
    (tmp_path / "neg" / "u16le.txt").write_bytes("a dull film".encode("utf-16-le"))

    with pytest.raises(DataError) as excinfo:
        read_examples(tmp_path)
    result = read_examples(tmp_path, ReadOptions(skip_bad_rows=True))

    message = str(excinfo.value)
    assert f"{tmp_path / 'neg' / 'u16le.txt'} line 1: the text looks like UTF-16" in (
        message
    )
    assert "--skip-bad-rows" in message
    assert [example.text for example in result.examples] == ["bad", "good", "fine"]
    assert [(Path(row.source).name, row.line) for row in result.bad_rows] == [
        ("u16le.txt", 1),
        ("u16.txt", 1),
    ]
    assert result.bad_rows[1].reason == "the text is UTF-16"


def test_scan_counts_lone_carriage_returns() -> None:
    scan = EncodingScan("reviews.txt")

    # The CRLF between the two blocks is one line end, not a lone "\r".
    scan.feed(b"one\rtwo\r\nthree\r")
    scan.feed(b"\nfour\r\r")

    assert scan.lone_carriage_returns == 3


@pytest.mark.parametrize(
    ("compress", "kind", "tool"),
    [
        ("gzip", "gzip-compressed", "gunzip"),
        ("bz2", "bzip2-compressed", "bunzip2"),
        ("lzma", "xz-compressed", "unxz"),
        ("zip", "a zip archive", "unzip"),
        ("empty bz2", "bzip2-compressed", "bunzip2"),
    ],
)
@pytest.mark.parametrize("name", ["reviews.csv", "reviews.jsonl", "reviews.txt"])
def test_compressed_file_named(tmp_path: Path, compress, kind, tool, name) -> None:
    import bz2
    import gzip
    import lzma
    import zipfile

    text = b"text,label\ngood film,pos\nbad film,neg\n"
    path = tmp_path / name
    if compress == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("reviews.csv", text)
    elif compress == "empty bz2":
        path.write_bytes(bz2.compress(b""))
    else:
        module = {"gzip": gzip, "bz2": bz2, "lzma": lzma}[compress]
        path.write_bytes(module.compress(text))

    with pytest.raises(DataError) as excinfo:
        read_texts(path)

    assert str(excinfo.value) == (
        f"{path}: the file is {kind}, not text; unpack it first (for example "
        f"with {tool}) and pass the text file"
    )


@pytest.mark.parametrize(
    "data",
    [
        b"BZh what a film\nBZh2 was fine\n",
        b"BZh9 good\nawful\n",
        b"(\xb5/\xfd good film caf\xe9\nawful\n",
        b"\x1f\x8b fine\nawful\n",
    ],
)
def test_text_starting_like_compressed_magic_is_text(
    tmp_path: Path, data: bytes
) -> None:
    path = tmp_path / "reviews.txt"
    path.write_bytes(data)

    texts = [example.text for example in read_texts(path).examples]

    assert len(texts) == 2
    assert texts[-1] in ("awful", "BZh2 was fine")


@pytest.mark.parametrize("codec", ["utf-32", "utf-32-le", "utf-32-be"])
def test_utf32_with_bom_named(tmp_path: Path, codec: str) -> None:
    path = tmp_path / "reviews.csv"
    bom = {"utf-32-le": "\ufeff", "utf-32-be": "\ufeff"}.get(codec, "")
    path.write_bytes((bom + "text\ngood film\n").encode(codec))

    with pytest.raises(DataError, match="the text is UTF-32; save it as UTF-8"):
        read_texts(path)

    with pytest.raises(DataError, match="the text is UTF-32"):
        decode_bytes(path.read_bytes(), str(path))


def test_zstd_frame_named(tmp_path: Path) -> None:
    # the magic number, a frame header and the start of a compressed block
    path = tmp_path / "reviews.csv"
    path.write_bytes(b"\x28\xb5\x2f\xfd\x24\x1f\xf9\x00\x00\x10text,label")

    with pytest.raises(DataError, match="the file is zstd-compressed, not text"):
        read_texts(path)


def test_bom_with_one_cp1252_byte_singular(caplog: pytest.LogCaptureFixture) -> None:
    scan = EncodingScan("reviews.csv")
    scan.feed(b"\xef\xbb\xbftext\ncaf\xe9 great\n")

    with caplog.at_level(logging.INFO, logger="sentiment_lstm.data"):
        scan.result()

    assert "1 of its bytes is invalid in UTF-8" in caplog.text
    assert "so the row that contains it is bad" in caplog.text


@pytest.mark.parametrize("whole", [False, True], ids=["scanned", "whole file"])
def test_bom_with_cp1252_bytes_warns(
    caplog: pytest.LogCaptureFixture, whole: bool
) -> None:
    data = b"\xef\xbb\xbftext\ncaf\xe9 great\nna\xefve and caf\xc3\xa9\n"

    with caplog.at_level(logging.INFO, logger="sentiment_lstm.data"):
        if whole:
            decoded = decode_bytes(data, "reviews.csv")
            encoding = decoded.encoding
        else:
            scan = EncodingScan("reviews.csv")
            scan.feed(data)
            encoding = scan.result().name

    # The mark still decides the encoding, and a warning counts the bad bytes.
    assert encoding == "utf-8-sig"
    assert "reviews.csv starts with a UTF-8 byte order mark" in caplog.text
    assert "2 of its bytes are invalid in UTF-8" in caplog.text
    assert "valid multi-byte UTF-8 characters: 1)" in caplog.text
    assert "remove its first 3 bytes" in caplog.text


def test_valid_bom_file_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    data = b"\xef\xbb\xbftext\ncaf\xc3\xa9 great\n"

    with caplog.at_level(logging.INFO, logger="sentiment_lstm.data"):
        scan = EncodingScan("reviews.csv")
        scan.feed(data)
        encoding = scan.result()
        decoded = decode_bytes(data, "reviews.csv")

    assert encoding.name == "utf-8-sig"
    assert decoded.text == "text\ncafé great\n"
    assert caplog.text == ""
