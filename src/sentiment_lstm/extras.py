"""How to install the optional parts of the package, for error messages."""

import json
from urllib.parse import unquote, urlparse

DISTRIBUTION = "sentiment-lstm"


def install_hint(extra: str) -> str:
    """Return the command that installs one of the package's extras.

    An install from a source folder, as the README shows, records the folder
    in the package's ``direct_url.json`` (PEP 610), and the command names it.
    Any other install, such as one from a wheel, gets the package's name.
    """
    folder = _source_folder()
    if folder is None:
        return f"pip install '{DISTRIBUTION}[{extra}]'"
    return f"pip install '{folder}[{extra}]'"


def _source_folder() -> str | None:
    """Return the local folder the package was installed from, or None."""
    # Imported here, because importing it takes about 20 ms, which every
    # command would pay at start-up for a hint that only errors need.
    from importlib import metadata

    try:
        text = metadata.distribution(DISTRIBUTION).read_text("direct_url.json")
        record = json.loads(text) if text else None
    except (metadata.PackageNotFoundError, OSError, ValueError):
        return None
    if not isinstance(record, dict) or "dir_info" not in record:
        return None
    url = urlparse(str(record.get("url", "")))
    if url.scheme != "file":
        return None
    return unquote(url.path)
