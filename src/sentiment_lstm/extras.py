"""How to install the optional parts of the package, for error messages."""


def install_hint(extra: str) -> str:
    """Return the command that installs one of the package's extras.

    The package is installed from its source folder, as the README shows, so
    the command names the folder rather than a package index.
    """
    return f"pip install '.[{extra}]' in the sentiment-lstm source folder"
