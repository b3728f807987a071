"""Tests for the fingerprint of data files."""

from pathlib import Path

import pytest

from sentiment_lstm.data import DataError, data_fingerprint


def make_pair(
    folder: Path, neg: bytes = b"bad\n", pos: bytes = b"good\n"
) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "r.neg").write_bytes(neg)
    (folder / "r.pos").write_bytes(pos)
    return [folder / "r.neg", folder / "r.pos"]


def test_fingerprint_is_sha256_hex(tmp_path: Path) -> None:
    digest = data_fingerprint(make_pair(tmp_path))

    assert len(digest) == 64
    assert int(digest, 16) >= 0


def test_fingerprint_ignores_location_and_order(tmp_path: Path) -> None:
    first = make_pair(tmp_path / "a")
    second = make_pair(tmp_path / "b" / "deeper")

    assert data_fingerprint(first) == data_fingerprint(list(reversed(second)))


def test_fingerprint_changes_with_bytes(tmp_path: Path) -> None:
    first = make_pair(tmp_path / "a")
    second = make_pair(tmp_path / "b", pos=b"good!\n")

    assert data_fingerprint(first) != data_fingerprint(second)


def test_fingerprint_changes_with_names(tmp_path: Path) -> None:
    first = make_pair(tmp_path / "a")
    renamed = tmp_path / "b"
    renamed.mkdir()
    (renamed / "s.neg").write_bytes(b"bad\n")
    (renamed / "s.pos").write_bytes(b"good\n")

    assert data_fingerprint(first) != data_fingerprint(
        [renamed / "s.neg", renamed / "s.pos"]
    )


def test_fingerprint_of_nothing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no data files"):
        data_fingerprint([])


def test_fingerprint_of_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read the file"):
        data_fingerprint([tmp_path / "missing.csv"])
