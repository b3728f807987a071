"""Fixtures for the data tests: real data paths, an isolated cache and verified
rt-polarity contents."""

import hashlib
import socket
from pathlib import Path

import pytest

from sentiment_lstm.data import datasets

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
RT_POLARITY_DIR = SHARED_DATA / "rt-polarity"
NETFLIX_CSV = SHARED_DATA / "netflix-app-reviews" / "reviews.csv"


def _closed_port_url() -> str:
    """Return a loopback URL on a port that was just bound and closed, so that
    nothing listens there."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/rt-polaritydata.tar.gz"


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the cache at tmp_path and every default download at a closed port."""
    cache = tmp_path / "cache"
    monkeypatch.setenv(datasets.CACHE_ENV, str(cache))
    monkeypatch.delenv(datasets.RT_POLARITY_ENV, raising=False)
    monkeypatch.setenv(datasets.RT_POLARITY_URL_ENV, _closed_port_url())
    return cache


@pytest.fixture
def unreachable_url() -> str:
    """A loopback URL where nothing listens."""
    return _closed_port_url()


@pytest.fixture(scope="session")
def real_rt_polarity() -> Path:
    """Folder of the real rt-polarity files; the test skips when it is absent."""
    if not (RT_POLARITY_DIR / "rt-polarity.pos").is_file():
        pytest.skip(f"real rt-polarity data not found at {RT_POLARITY_DIR}")
    return RT_POLARITY_DIR


@pytest.fixture(scope="session")
def real_netflix_csv() -> Path:
    """The real Netflix reviews CSV; the test skips when it is absent."""
    if not NETFLIX_CSV.is_file():
        pytest.skip(f"real Netflix reviews not found at {NETFLIX_CSV}")
    return NETFLIX_CSV


@pytest.fixture
def rt_files(monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """Contents of rt-polarity.pos and rt-polarity.neg that pass verification.

    The real files when present. Otherwise two small files, with the expected
    checksums and line count patched to match them.
    """
    names = ("rt-polarity.pos", "rt-polarity.neg")
    if all((RT_POLARITY_DIR / name).is_file() for name in names):
        return {name: (RT_POLARITY_DIR / name).read_bytes() for name in names}

    files = {
        "rt-polarity.pos": b"a gripping , funny film \x85 truly great .\n" * 3,
        "rt-polarity.neg": b"a dull and lifeless mess .\n" * 3,
    }
    checksums = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    monkeypatch.setattr(datasets, "RT_POLARITY_SHA256", checksums)
    monkeypatch.setattr(datasets, "RT_POLARITY_LINES", 3)
    return files
