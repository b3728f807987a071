"""Readers for files with one review per line: pos/neg pairs and plain text."""

from pathlib import Path

from sentiment_lstm.data.collector import EMPTY_FIX, ENCODING_FIX, ExampleCollector
from sentiment_lstm.data.decoding import (
    decode_file,
    invalid_byte_reason,
    split_line_file,
    without_final_blank_lines,
)
from sentiment_lstm.data.records import DataError


def is_posneg_stem(path: Path) -> bool:
    """Return whether path is the common stem x of an x.pos or x.neg file."""
    if not path.name:
        return False
    return any(
        path.with_name(path.name + suffix).is_file() for suffix in (".pos", ".neg")
    )


def find_posneg_pair(path: Path) -> tuple[Path, Path]:
    """Find the negative and positive file of a pos/neg pair.

    Args:
        path: Either file of the pair (``x.pos`` or ``x.neg``), their common stem
            (``x``), or a folder that contains exactly one ``*.pos`` and one
            ``*.neg`` file.

    Returns:
        The ``.neg`` file and the ``.pos`` file.

    Raises:
        DataError: If the pair is incomplete or the folder is ambiguous.
    """
    if path.is_dir():
        negatives = sorted(item for item in path.glob("*.neg") if item.is_file())
        positives = sorted(item for item in path.glob("*.pos") if item.is_file())
        if len(negatives) != 1 or len(positives) != 1:
            found = [item.name for item in negatives + positives] or ["none"]
            raise DataError(
                f"{path}: expected exactly one *.pos and one *.neg file in the "
                f"folder, found: {', '.join(found)}; pass one file of the pair instead"
            )
        return negatives[0], positives[0]

    if path.suffix.lower() in (".pos", ".neg"):
        negative = path.with_suffix(".neg")
        positive = path.with_suffix(".pos")
    else:
        negative = path.with_name(path.name + ".neg")
        positive = path.with_name(path.name + ".pos")
    missing = [str(item) for item in (negative, positive) if not item.is_file()]
    if missing:
        verb = "was" if len(missing) == 1 else "were"
        raise DataError(
            f"{path}: pos/neg data needs both {positive.name} and {negative.name} "
            f"side by side, but {' and '.join(missing)} {verb} not found"
        )
    return negative, positive


def read_line_file(path: Path, label: int | None, collector: ExampleCollector) -> None:
    """Read a file with one review per line into collector.

    Lines are split on "\\n" only, or on "\\r" in a file without any "\\n"
    (see ``split_line_file``). An empty or whitespace-only line and a line with
    an invalid byte are bad rows. Blank lines at the end of the file are
    ignored, except in prediction input that keeps unscored rows, where every
    line keeps its place as file scoring does.

    Args:
        path: File to read.
        label: Label of every review in the file, None for unlabelled text.
        collector: Receiver of examples and bad rows.

    Raises:
        DataError: On the first bad row unless bad rows are skipped, or if the file
            cannot be read.
    """
    collector.add_file(path)
    decoded = decode_file(path)
    source = str(path)
    lines = split_line_file(decoded.text, source)
    if not collector.keep_unscored:
        lines = without_final_blank_lines(lines, source)
    for number, line in enumerate(lines, start=1):
        reason = invalid_byte_reason(line, decoded)
        if reason is not None:
            collector.reject_unscorable(
                source, number, line.strip(), reason, ENCODING_FIX
            )
            continue
        text = line.strip()
        if not text:
            collector.reject_unscorable(source, number, "", "empty review", EMPTY_FIX)
            continue
        collector.add(text, label, source, number)


def read_posneg(path: Path, collector: ExampleCollector) -> None:
    """Read a pos/neg pair: the .neg file gives label 0 and the .pos file label 1."""
    negative, positive = find_posneg_pair(path)
    read_line_file(negative, 0, collector)
    read_line_file(positive, 1, collector)
