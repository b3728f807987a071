"""Options and helpers shared by several subcommands."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import sys
from pathlib import Path

from sentiment_lstm.data import DataError, ReadOptions, StarRule
from sentiment_lstm.extras import install_hint

FORMAT_CHOICES = ("posneg", "csv", "tsv", "jsonl", "folder", "lines")
LABELLED_FORMAT_CHOICES = FORMAT_CHOICES[:-1]


class CommandError(Exception):
    """A failure to report in one line, without a traceback.

    Attributes:
        usage: True when the command line itself was wrong (exit status 2).
    """

    def __init__(self, message: str, usage: bool = False) -> None:
        super().__init__(message)
        self.usage = usage


def missing_training_packages(command: str, err: ImportError) -> CommandError:
    """Describe in one line that a command needs the ``train`` extra.

    A serving install (the ``serve`` extra alone) has no PyTorch, so the
    training code fails to import there.
    """
    return CommandError(
        f"{command} needs PyTorch, which failed to import ({err}); install it "
        f"with: {install_hint('train')}"
    )


def add_data_options(
    parser: argparse.ArgumentParser,
    *,
    labels: bool = True,
    format_flags: tuple[str, ...] = ("--format", "--data-format"),
) -> None:
    """Add the options that say how to read a data file.

    Args:
        parser: The subcommand's parser.
        labels: Add the label column and star rating options.
        format_flags: Spellings of the data format option; ``predict`` and
            ``evaluate`` use ``--format`` for their output instead.
    """
    group = parser.add_argument_group("reading data")
    group.add_argument(
        *format_flags,
        dest="data_format",
        # Plain text lines have no labels.
        choices=FORMAT_CHOICES if not labels else LABELLED_FORMAT_CHOICES,
        help="data format; by default detected from the file extension or folder",
    )
    group.add_argument(
        "--text-column",
        help="CSV/TSV column or JSONL key holding the review text "
        "(default: the first of text, review, content, sentence, comment, body)",
    )
    if labels:
        group.add_argument(
            "--label-column",
            help="column or key holding the label (default: the first of label, "
            "sentiment, polarity, score, rating, stars)",
        )
        group.add_argument(
            "--stars",
            action="store_true",
            help="the label column holds star ratings: low ratings are negative, "
            "high ones positive, the middle is left out",
        )
        # The cut-offs default to None, so that giving one without --stars
        # can be rejected; read_options_from_args fills in StarRule's values.
        group.add_argument(
            "--negative-max-stars",
            type=finite_float,
            metavar="STARS",
            help="with --stars, ratings up to this are negative "
            f"(default: {StarRule().negative_max:g})",
        )
        group.add_argument(
            "--positive-min-stars",
            type=finite_float,
            metavar="STARS",
            help="with --stars, ratings from this up are positive "
            f"(default: {StarRule().positive_min:g})",
        )
    if labels:
        skip_help = (
            "leave out rows with missing text, unknown labels or undecodable "
            "bytes, and report how many, instead of stopping at the first"
        )
    else:
        skip_help = (
            "write rows that do not parse (a CSV row with the wrong number of "
            "fields, a line that is not a JSON object) in their place with empty "
            "fields and the reason in the error column, and report how many, "
            "instead of stopping at the first; empty lines and rows with empty "
            "text or undecodable bytes are always kept, marked in the error "
            "column"
        )
    group.add_argument("--skip-bad-rows", action="store_true", help=skip_help)


def read_options_from_args(
    args: argparse.Namespace, *, require_labels: bool = True
) -> ReadOptions:
    """Build ReadOptions from parsed arguments, validating columns and cut-offs.

    Raises:
        CommandError: If a column name is empty, a star cut-off is given
            without ``--stars``, or the cut-offs overlap.
    """
    text_column = args.text_column
    label_column = getattr(args, "label_column", None)
    for flag, value in (
        ("--text-column", text_column),
        ("--label-column", label_column),
    ):
        if value is not None and not value.strip():
            raise CommandError(
                f"{flag} {value!r} is empty; name a column of the file, or leave "
                "the flag out to detect the column",
                usage=True,
            )
    stars = getattr(args, "stars", False)
    cut_offs = {
        "--negative-max-stars": getattr(args, "negative_max_stars", None),
        "--positive-min-stars": getattr(args, "positive_min_stars", None),
    }
    for flag, value in cut_offs.items():
        if value is not None and not stars:
            raise CommandError(
                f"{flag} {value:g} applies only with --stars; add --stars if the "
                "label column holds star ratings, or leave the flag out",
                usage=True,
            )
    negative_max = cut_offs["--negative-max-stars"]
    positive_min = cut_offs["--positive-min-stars"]
    if negative_max is None:
        negative_max = StarRule().negative_max
    if positive_min is None:
        positive_min = StarRule().positive_min
    if negative_max >= positive_min:
        raise CommandError(
            f"--negative-max-stars ({negative_max:g}) must be below "
            f"--positive-min-stars ({positive_min:g})",
            usage=True,
        )
    try:
        return ReadOptions(
            format=args.data_format,
            text_column=text_column,
            label_column=label_column,
            stars=stars,
            star_rule=StarRule(negative_max=negative_max, positive_min=positive_min),
            skip_bad_rows=args.skip_bad_rows,
            require_labels=require_labels,
        )
    except DataError as err:
        raise CommandError(str(err), usage=True) from err


# Numbers as options are written: ASCII digits, without the "_" separators
# and the digits of other scripts that Python's int() and float() also read,
# so that "1_0" is not taken for 10. float() still reads nan and inf, which
# finite_float rejects by name.
_ASCII_INT = re.compile(r"\s*[+-]?\d+\s*", re.ASCII)
_ASCII_FLOAT = re.compile(
    r"\s*[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf|infinity|nan)\s*",
    re.ASCII | re.IGNORECASE,
)


def ascii_int(text: str) -> int:
    """Return the integer that ``text`` spells in ASCII digits.

    Raises:
        ValueError: For anything else, as ``int`` does.
    """
    if not _ASCII_INT.fullmatch(text):
        raise ValueError(f"invalid integer {text!r}")
    return int(text)


def ascii_float(text: str) -> float:
    """Return the number that ``text`` spells in ASCII decimal notation.

    Raises:
        ValueError: For anything else, as ``float`` does.
    """
    if not _ASCII_FLOAT.fullmatch(text):
        raise ValueError(f"invalid number {text!r}")
    return float(text)


def finite_float(text: str) -> float:
    """Parse a finite number for argparse, rejecting nan and inf."""
    try:
        value = ascii_float(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from err
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def fraction(text: str) -> float:
    """Parse a number in [0, 1) for argparse."""
    value = finite_float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a value in [0, 1), got {value:g}")
    return value


def keep_probability(text: str) -> float:
    """Parse a probability of keeping an activation, in (0, 1], for argparse."""
    value = finite_float(text)
    # A value so small that 1 - value rounds to 1 drops every activation too.
    if not 0.0 < value <= 1.0 or 1.0 - value == 1.0:
        raise argparse.ArgumentTypeError(
            f"expected a value above 0 and at most 1, got {value:g}; 1 keeps "
            "every activation, and 0 or a value below about 1e-16 would drop "
            "them all"
        )
    return value


def probability(text: str) -> float:
    """Parse a number in [0, 1] for argparse."""
    value = finite_float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a value in [0, 1], got {value:g}")
    return value


def path_argument(text: str) -> Path:
    """Parse a file or folder path for argparse, rejecting an empty one.

    ``Path("")`` is the current folder, so an empty value, such as an unset
    shell variable, would otherwise name it without a word.
    """
    if not text.strip():
        raise argparse.ArgumentTypeError(
            f"expected a path, got {text!r}; check the variable or quoting that "
            "gave it"
        )
    return Path(text)


def file_path_argument(text: str) -> Path:
    """Parse the path of an output file for argparse.

    Rejects an empty value as :func:`path_argument` does, and a path that
    ends in a slash, "." or "..", which names a folder although ``Path``
    drops the slash and the ".".
    """
    path = path_argument(text)
    separators = tuple(sep for sep in (os.sep, os.altsep) if sep)
    if text.endswith(separators):
        raise argparse.ArgumentTypeError(
            f"{text!r} ends in {text[-1]}, so it names a folder; name a file "
            "in that folder"
        )
    # Path drops a final "." as well, and ".." is a folder too.
    if os.path.basename(text) in (".", ".."):
        raise argparse.ArgumentTypeError(
            f"{text!r} ends in {os.path.basename(text)}, so it names a folder; "
            "name a file in that folder"
        )
    return path


def positive_int(text: str) -> int:
    """Parse an integer of at least 1 for argparse."""
    try:
        value = ascii_int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from err
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value


def thread_count(text: str) -> int:
    """Parse a thread count from 1 to the logical CPUs of this machine for argparse."""
    value = positive_int(text)
    cpus = os.cpu_count() or 1
    if value > cpus:
        raise argparse.ArgumentTypeError(
            f"expected at most {cpus}, the logical CPUs of this machine, got {value}"
        )
    return value


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--threads``, the PyTorch threads of ``train`` and ``cross-validate``."""
    parser.add_argument(
        "--threads",
        type=thread_count,
        default=1,
        help="CPU threads of PyTorch, at most the logical CPUs (default: 1, "
        "because more threads than free cores slow training down several "
        "times over while other jobs share the cores; more threads give the "
        "same model)",
    )


def non_negative_int(text: str) -> int:
    """Parse an integer of at least 0 for argparse."""
    try:
        value = ascii_int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from err
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {value}")
    return value


def positive_float(text: str) -> float:
    """Parse a finite number above 0 for argparse."""
    value = finite_float(text)
    if not value > 0:
        # The text as given, since a value such as 1e-400 reads as 0.
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text}")
    return value


# Below this, Adam's steps fall under the rounding of nearly every float32
# weight. After 10 AdamW steps at 1e-10 with random gradients, 0.7% of
# 100,000 weights drawn from +-0.25 had changed (torch 2.13).
MIN_LEARNING_RATE = 1e-10


def check_stdout_writable(output: str, *, closed_ok: bool = False) -> None:
    """Raise CommandError if stdout is closed or open for reading only.

    Args:
        output: What the command writes to stdout, as in "the report".
        closed_ok: Accept a closed stdout, where the output also goes elsewhere.
    """
    if sys.stdout is None:
        # Python sets sys.stdout to None when descriptor 1 is closed (>&-).
        if closed_ok:
            return
        raise CommandError(
            f"stdout is closed, so {output} has nowhere to go; redirect it to a "
            "file with > FILE"
        )
    try:
        import fcntl

        flags = fcntl.fcntl(sys.stdout.fileno(), fcntl.F_GETFL)
    except (ImportError, AttributeError, OSError, ValueError):
        # No descriptor to inspect (Windows, or a stream of the caller's).
        return
    if flags & os.O_ACCMODE == os.O_RDONLY:
        raise CommandError(
            f"stdout is open for reading only, so {output} cannot be written to "
            "it; redirect it to a file you can write to, with > FILE"
        )


def learning_rate(text: str) -> float:
    """Parse a learning rate, a finite number of at least 1e-10, for argparse."""
    value = positive_float(text)
    if value < MIN_LEARNING_RATE:
        raise argparse.ArgumentTypeError(
            f"expected a learning rate of at least {MIN_LEARNING_RATE:g}, got "
            f"{text}; at smaller rates nearly every float32 weight keeps its "
            "starting value, so the model would not learn"
        )
    return value


def seed_value(text: str) -> int:
    """Parse a random seed, an integer from 0 to 2**32 - 1, for argparse."""
    try:
        value = ascii_int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from err
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(
            f"expected an integer from 0 to {2**32 - 1}, got {value}"
        )
    return value


def existing_model_dir(text: str) -> Path:
    """Parse a model directory path; existence is checked when loading."""
    return Path(text)


def data_error(err: DataError) -> CommandError:
    """Wrap a data error for one-line reporting."""
    return CommandError(str(err))


def logs_above_progress_bars() -> contextlib.AbstractContextManager:
    """Return a context in which log lines go above tqdm's progress bars.

    Where stderr was closed (2>&-), tqdm would write log lines to stdout, so
    logging stays as it is there.
    """
    if sys.stderr is None:
        return contextlib.nullcontext()
    from tqdm.contrib.logging import logging_redirect_tqdm

    return logging_redirect_tqdm()
