"""The install commands that error messages give for the package's extras."""

import json
from importlib import metadata

import pytest

from sentiment_lstm import extras


class FakeDistribution:
    """Metadata of an installed package with a given direct_url.json."""

    def __init__(self, direct_url: str | None) -> None:
        self.direct_url = direct_url

    def read_text(self, name: str) -> str | None:
        return self.direct_url if name == "direct_url.json" else None


@pytest.mark.parametrize(
    ("direct_url", "expected"),
    [
        (
            {"url": "file:///home/ana/sentiment%20lstm", "dir_info": {}},
            "pip install '/home/ana/sentiment lstm[train]'",
        ),
        (
            {"url": "file:///src/sentiment-lstm", "dir_info": {"editable": True}},
            "pip install '/src/sentiment-lstm[train]'",
        ),
        # A wheel or an archive downloaded from an index.
        (
            {"url": "https://example.org/sentiment_lstm.whl", "archive_info": {}},
            "pip install 'sentiment-lstm[train]'",
        ),
        (None, "pip install 'sentiment-lstm[train]'"),
    ],
)
def test_install_hint_names_source(monkeypatch, direct_url, expected):
    text = None if direct_url is None else json.dumps(direct_url)
    monkeypatch.setattr(metadata, "distribution", lambda name: FakeDistribution(text))

    assert extras.install_hint("train") == expected


def test_install_hint_without_metadata(monkeypatch):
    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", missing)

    assert extras.install_hint("serve") == "pip install 'sentiment-lstm[serve]'"
