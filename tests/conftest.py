"""Fixtures shared across the test tree."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

# The package turns ONNX Runtime's telemetry off before it imports it; test
# modules that import onnxruntime themselves need the same before collection.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
# The real data sets live beside the repository in CI and development machines.
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
RT_POLARITY = SHARED_DATA / "rt-polarity"
NETFLIX_CSV = SHARED_DATA / "netflix-app-reviews" / "reviews.csv"


def default_signals() -> None:
    """Restore SIGINT and SIGHUP to their defaults, in a child before exec.

    A shell starts background jobs with SIGINT ignored, and nohup ignores
    SIGHUP. A child inherits both, and the product keeps an inherited
    ignore, so tests that send these signals restore them first.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


POSITIVE_REVIEWS = [
    "a wonderful , moving film with great acting",
    "brilliant and funny , i loved every minute",
    "the cast is superb and the story is beautiful",
    "an excellent , heartfelt drama that works",
    "great fun , charming and clever",
    "a delightful surprise with wonderful music",
    "one of the best films of the year , truly great",
    "smart , funny and moving : a joy to watch",
]
NEGATIVE_REVIEWS = [
    "a dull , boring mess with terrible acting",
    "awful and tedious , i hated every minute",
    "the plot is stupid and the dialogue is bad",
    "a lifeless , clumsy drama that never works",
    "boring , predictable and far too long",
    "a painful waste of time with dreadful music",
    "one of the worst films of the year , truly awful",
    "dumb , dull and ugly : a chore to watch",
]


@pytest.fixture
def one_torch_thread():
    """Run PyTorch on one thread, as each ensemble member process does."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def rt_polarity_dir() -> Path:
    """The real rt-polarity files; tests skip when they are absent."""
    if not (RT_POLARITY / "rt-polarity.pos").is_file():
        pytest.skip(f"rt-polarity data not found at {RT_POLARITY}")
    return RT_POLARITY


@pytest.fixture(scope="session")
def netflix_csv() -> Path:
    """The real Netflix app reviews CSV; tests skip when it is absent."""
    if not NETFLIX_CSV.is_file():
        pytest.skip(f"Netflix reviews not found at {NETFLIX_CSV}")
    return NETFLIX_CSV


@pytest.fixture
def tiny_posneg(tmp_path: Path) -> Path:
    """A small pos/neg corpus, each review repeated so a model can learn it."""
    (tmp_path / "tiny.pos").write_text(
        "\n".join(POSITIVE_REVIEWS * 6) + "\n", encoding="utf-8"
    )
    (tmp_path / "tiny.neg").write_text(
        "\n".join(NEGATIVE_REVIEWS * 6) + "\n", encoding="utf-8"
    )
    return tmp_path / "tiny.pos"


@pytest.fixture
def python_sigint_handler():
    """Give SIGINT Python's own handler for the test, as in a terminal.

    A shell starts background jobs, such as a test run under nohup, with
    SIGINT ignored, and the command line then leaves Ctrl-C alone.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def run_to_full_disk(arguments: list[str]) -> subprocess.CompletedProcess:
    """Run ``sentiment-lstm`` with these arguments, its stdout on /dev/full."""
    with open("/dev/full", "w") as full:
        return subprocess.run(
            [sys.executable, "-m", "sentiment_lstm", *arguments],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
        )


def mount_read_only(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    """Make ``path`` look like a file on a file system mounted read-only.

    ``os.access(path, os.W_OK)`` is then false whatever the file's mode, as
    on such a mount, and ``os.statvfs`` reports the read-only flag.
    """
    real_access, real_statvfs = os.access, os.statvfs

    def statvfs(name):
        result = real_statvfs(name)
        if Path(name) != path:
            return result
        flags = result.f_flag | os.ST_RDONLY
        return os.statvfs_result((*result[:8], flags, *result[9:]))

    monkeypatch.setattr(
        "os.access", lambda name, mode: Path(name) != path and real_access(name, mode)
    )
    monkeypatch.setattr("os.statvfs", statvfs)
