"""Entry points that detect the data format of a path and read its examples."""

import dataclasses
import logging
from pathlib import Path

from sentiment_lstm.data.collector import ExampleCollector
from sentiment_lstm.data.decoding import NUL_SAMPLE_BYTES, check_file_start
from sentiment_lstm.data.delimited import read_delimited
from sentiment_lstm.data.folders import (
    find_review_folders,
    partial_layout_note,
    read_review_folders,
)
from sentiment_lstm.data.jsonl import read_jsonl
from sentiment_lstm.data.line_files import (
    is_posneg_stem,
    posneg_files,
    read_line_file,
    read_posneg,
)
from sentiment_lstm.data.records import (
    DataError,
    ReadOptions,
    ReadResult,
    broken_link_error,
)

logger = logging.getLogger(__name__)

EXTENSION_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".pos": "posneg",
    ".neg": "posneg",
    ".txt": "lines",
}

# Formats whose files name their columns, so that column options apply.
_TABULAR_FORMATS = ("csv", "tsv", "jsonl")

_FORMAT_DESCRIPTIONS = {
    "posneg": "pos/neg files",
    "folder": "a folder of review files",
    "lines": "a plain text file",
}


# Added where the format came from the file name: a CSV saved as .txt is
# read as plain text.
_REAL_FORMAT_HINT = (
    "; or, if the file is CSV, TSV or JSONL under another extension, pass its "
    "format with --data-format (--input-format in predict)"
)


def data_path(path: str | Path) -> Path:
    """Return path as a Path, rejecting an empty string.

    ``Path("")`` is the current folder, which is not what an empty --data
    means.

    Raises:
        DataError: If path is empty or only whitespace.
    """
    if isinstance(path, str) and not path.strip():
        raise DataError(
            f"the data path is empty ({path!r}); pass a file or folder, or a data "
            "set name"
        )
    return Path(path)


def detect_format(path: Path, format_option: str = "--data-format") -> str:
    """Detect the data format of path from its extension or folder layout.

    Args:
        path: A file, a folder, or the common stem of a pos/neg pair.
        format_option: The command line option that names a format, for the
            error message.

    Returns:
        One of "posneg", "csv", "tsv", "jsonl", "folder" or "lines".

    Raises:
        DataError: If path does not exist or its format is unknown.
    """
    if path.is_dir():
        if find_review_folders(path):
            return "folder"
        negatives, positives = posneg_files(path)
        if negatives or positives:
            return "posneg"
        raise DataError(
            f"{path}: cannot detect the data format of this folder; expected pos/ "
            "and neg/ subfolders of .txt reviews (or train/ and test/ subfolders "
            "that contain them), or one *.pos and one *.neg file"
            + partial_layout_note(path)
        )
    if path.is_file():
        data_format = EXTENSION_FORMATS.get(path.suffix.lower())
        if data_format is None:
            # A compressed file, such as reviews.csv.gz, needs unpacking first,
            # whatever format is passed.
            try:
                with open(path, "rb") as stream:
                    check_file_start(stream.read(NUL_SAMPLE_BYTES), str(path))
            except OSError:
                pass
            extension = (
                f"the extension {path.suffix!r}"
                if path.suffix
                else ("a name without an extension")
            )
            raise DataError(
                f"{path}: cannot detect the data format from {extension}; "
                f"supported: {', '.join(EXTENSION_FORMATS)} and folders; rename "
                f"the file or pass {format_option} (lines for plain text, one "
                "review a line)"
            )
        return data_format
    if is_posneg_stem(path):
        return "posneg"
    if path.exists():
        # A pipe or a device: the same message as with the format given.
        require_regular_file(path, "data")
    if path.is_symlink():
        raise broken_link_error(path)
    raise DataError(
        f"data path not found: {path}; pass an existing file or folder, or the "
        "common stem of x.pos and x.neg"
    )


def check_read_options(path: Path, data_format: str, options: ReadOptions) -> None:
    """Raise if an option does not apply to the format, or the path is unusable.

    Raises:
        DataError: Naming the option or the path and the fix.
    """
    if data_format not in _TABULAR_FORMATS:
        column_flags = [
            flag
            for flag, value in (
                ("--text-column", options.text_column),
                ("--label-column", options.label_column),
                ("--stars", options.stars),
            )
            if value
        ]
        if column_flags:
            flags = " and ".join(column_flags)
            verb, pronoun = (
                ("applies", "it") if len(column_flags) == 1 else ("apply", "them")
            )
            raise DataError(
                f"{path}: {flags} only {verb} to CSV, TSV and JSONL files, not to "
                f"{_FORMAT_DESCRIPTIONS[data_format]}; remove {pronoun}"
                + (_REAL_FORMAT_HINT if options.format is None else "")
            )
    if data_format == "lines" and options.require_labels:
        raise DataError(
            f"{path}: a plain text file has one review per line and no labels, so "
            "it can only be used for prediction; for labelled data use x.pos and "
            "x.neg files, a CSV, TSV or JSONL file with a label column, or a folder "
            "with pos/ and neg/ subfolders"
            + (_REAL_FORMAT_HINT if options.format is None else "")
        )
    if not path.exists() and not is_posneg_stem(path):
        if path.is_symlink():
            raise broken_link_error(path)
        raise DataError(f"data path not found: {path}; pass an existing file or folder")
    if data_format == "folder" and not path.is_dir():
        raise DataError(f"{path}: the folder format needs a folder; pass one")
    if data_format in (*_TABULAR_FORMATS, "lines"):
        require_regular_file(path, data_format)


def require_regular_file(path: Path, data_format: str) -> None:
    """Raise unless path is a regular file, naming what it is instead.

    Raises:
        DataError: If path is missing, a folder, or a pipe or device, whose
            contents cannot be read twice (once to detect the encoding).
    """
    if path.is_file():
        return
    if path.is_dir():
        raise DataError(f"{path}: is a folder; pass a {data_format} file")
    if path.exists():
        raise DataError(
            f"{path}: not a regular file (a pipe or a device), which cannot be "
            "read twice to detect its encoding; save the reviews to a file "
            "first (predict reads a pipe itself)"
        )
    raise DataError(f"{path}: file not found; pass an existing {data_format} file")


def read_examples(path: str | Path, options: ReadOptions = ReadOptions()) -> ReadResult:
    """Read the reviews and labels of a data file or folder.

    Args:
        path: A pos/neg pair (either file, the common stem, or a folder with one of
            each), a CSV, TSV or JSONL file, or a folder of review files with pos/
            and neg/ subfolders (directly or under train/ and test/). With
            ``require_labels=False``, also a .txt file with one review per line.
        options: Format, columns, star ratings and handling of bad rows.

    Returns:
        The examples, the bad rows left out, the number of rows left out by star
        cut-offs and the files read.

    Raises:
        DataError: If the path or an option is invalid, no review is found, or on
            the first bad row unless ``options.skip_bad_rows`` is set. The message
            names the file, the line and the fix.
    """
    path = data_path(path)
    data_format = options.format or detect_format(path)
    check_read_options(path, data_format, options)
    logger.info("reading %s as %s", path, data_format)

    collector = ExampleCollector(
        options.skip_bad_rows, options.keep_unscored and not options.require_labels
    )
    if data_format == "posneg":
        read_posneg(path, collector)
    elif data_format == "folder":
        read_review_folders(path, collector)
    elif data_format == "lines":
        read_line_file(path, None, collector)
    elif data_format == "jsonl":
        read_jsonl(path, options, collector)
    else:
        read_delimited(path, "\t" if data_format == "tsv" else ",", options, collector)
    return collector.result(path, options.star_rule)


def read_texts(
    path: str | Path, options: ReadOptions = ReadOptions(require_labels=False)
) -> ReadResult:
    """Read reviews for prediction, with labels where the data has them.

    Same as ``read_examples`` with ``require_labels=False``, whatever
    ``options.require_labels`` is: a CSV, TSV or JSONL file needs no label column,
    and a .txt file with one review per line is accepted.

    Args:
        path: Any path that ``read_examples`` accepts, or a .txt file.
        options: Format, columns, star ratings and handling of bad rows.

    Returns:
        The examples, with label None where the data has no label.

    Raises:
        DataError: As for ``read_examples``.
    """
    return read_examples(path, dataclasses.replace(options, require_labels=False))
