"""``sentiment-lstm predict``: score reviews with a saved model.

Only argparse and the shared options load at import time. The handler imports
the predictor, and the predictor imports PyTorch only for the torch backend,
so scoring one review with an exported model starts without PyTorch.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import json
import logging
import os
import re
import stat
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from itertools import repeat
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from sentiment_lstm.cli.common import (
    CommandError,
    add_data_options,
    file_path_argument,
    path_argument,
    positive_int,
    read_options_from_args,
    thread_count,
)
from sentiment_lstm.files import inherited_descriptor

# Control characters and the line and paragraph separators, which
# str.splitlines and some terminals take as line breaks, and the stand-ins
# for bytes of a file name that are invalid in UTF-8.
_UNSAFE_IN_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\udc80-\udcff]")
# Stand-ins for the bytes of a file name that are invalid in UTF-8.
_INVALID_BYTE = re.compile("[\udc80-\udcff]")

logger = logging.getLogger(__name__)

OUTPUT_FORMATS = ("text", "jsonl", "csv", "tsv")
BACKEND_CHOICES = ("auto", "torch", "onnx")
# Formats of --input that score_file scores chunk by chunk. This module scores
# pos/neg pairs and folders of review files in chunks itself.
STREAMED_INPUT_FORMATS = ("csv", "tsv", "jsonl", "lines")
# Bytes of stdin copied to its temporary file at a time.
STDIN_COPY_BYTES = 1 << 20


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``predict`` subcommand."""
    parser = subparsers.add_parser(
        "predict",
        help="score reviews with a trained model",
        description="Print how positive and negative each review is. Reviews "
        "come from the arguments, from --input, or one per line from stdin. A "
        "CSV, TSV, JSONL, .txt, pos/neg or folder --input, and stdin, are "
        "scored in chunks, so inputs of any size fit in memory. Every row comes "
        "out in input order with its other columns, plus positive, negative, "
        "label and error columns. A row whose text cannot be scored keeps its "
        "place, with the reason in error.",
    )

    parser.add_argument(
        "reviews",
        nargs="*",
        metavar="REVIEW",
        help="review text; '-' alone reads the reviews from stdin",
    )
    parser.add_argument(
        "--model", required=True, type=path_argument, help="model directory from train"
    )
    parser.add_argument(
        "--input",
        type=path_argument,
        help="file of reviews (CSV, TSV, JSONL, pos/neg, folder, or one per line); "
        "'-' means stdin",
    )
    parser.add_argument(
        "--line-buffered",
        action="store_true",
        help="score each line of stdin as it arrives and write its result to "
        "stdout at once, reading it as UTF-8, instead of scoring stdin once it "
        "ends; for endless streams such as 'tail -f'",
    )
    parser.add_argument(
        "--output",
        type=file_path_argument,
        help="write results to this file instead of stdout ('-' means stdout); "
        "it appears only when scoring succeeds",
    )
    parser.add_argument(
        "--format",
        dest="output_format",
        choices=OUTPUT_FORMATS,
        default=None,
        help="text: one line per review; csv, tsv or jsonl: the input's columns "
        "(text for reviews given as arguments) plus positive, negative, label "
        "and error (default: text, or by --output's extension)",
    )

    add_backend_option(parser)
    _add_throughput_options(parser)
    add_data_options(
        parser, labels=False, format_flags=("--input-format", "--data-format")
    )
    parser.set_defaults(handler=run, command_parser=parser)


def _add_throughput_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("scoring files")
    group.add_argument(
        "--batch-size",
        type=positive_int,
        default=256,
        help="maximum reviews per forward pass (default: 256)",
    )
    group.add_argument(
        "--chunk-size",
        type=positive_int,
        default=8192,
        help="rows of --input read and scored at a time, fewer where they "
        "pass 4 million characters; memory grows with it (default: 8192)",
    )
    group.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        help="hide the progress bar, which is shown while scoring --input into "
        "--output on a terminal",
    )


def add_backend_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--backend auto|torch|onnx`` and ``--threads`` to a scoring subcommand."""
    parser.add_argument(
        "--backend",
        choices=BACKEND_CHOICES,
        default="auto",
        help="onnx: ONNX Runtime on model.onnx (from 'sentiment-lstm export'); "
        "torch: PyTorch; auto: onnx when model.onnx exists and onnxruntime is "
        "installed, else torch (default: auto)",
    )
    parser.add_argument(
        "--threads",
        type=thread_count,
        help="CPU threads for scoring: ONNX Runtime forward passes that run at "
        "once, each on one thread, or PyTorch's threads; fewer than the cores "
        "help while other jobs share them (default: one per physical core for "
        "onnx, PyTorch's own setting for torch)",
    )


def load_model(model_dir: Path, backend: str, threads: int | None = None):
    """Load a model for a subcommand, turning load failures into CommandError.

    ``threads`` sets the ONNX Runtime backend's parallel forward passes, or
    PyTorch's threads for the torch backend; None keeps the defaults.
    """
    from sentiment_lstm.artifact import ArtifactError
    from sentiment_lstm.predictor import SentimentModel

    try:
        model = SentimentModel.load(model_dir, backend=backend, threads=threads)
    except ArtifactError as err:
        raise CommandError(str(err)) from err
    except ImportError as err:
        raise CommandError(f"cannot load {model_dir}: {err}") from err
    if threads is not None and model.backend.name == "torch":
        import torch

        torch.set_num_threads(threads)
    return model


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Score the reviews and write one result per review, in input order."""
    if args.reviews and args.input:
        parser.error("give reviews as arguments or with --input, not both")
    # An explicit "-" reads stdin even from a terminal, as cat does.
    args.stdin_requested = args.reviews == ["-"] or args.input == Path("-")
    if args.reviews == ["-"]:
        # A lone "-" is stdin, as with --input -.
        args.reviews = []
    elif "-" in args.reviews:
        parser.error(
            "'-' reads the reviews from stdin, so it cannot come with reviews "
            "as arguments; pass them all on stdin or all as arguments"
        )
    if args.input == Path("-"):
        # "-" is stdin, as it is stdout for --output.
        args.input = None
    if args.output == Path("-"):
        args.output = None
    if args.line_buffered:
        _check_line_buffered(args, parser)
    if args.output is None and sys.stdout is None:
        # Python sets sys.stdout to None when descriptor 1 is closed (>&-).
        raise CommandError(
            "stdout is closed, so the results have nowhere to go; pass --output FILE"
        )

    if args.output is not None and inherited_descriptor(args.output) is None:
        _check_output_name(args.output, args.output_format, parser)
    model = load_model(args.model, args.backend, args.threads)
    if args.output is None:
        _replace_unencodable_on_stdout()
        return _score(args, parser, model)
    before = _file_identity(args.output)
    try:
        return _score(args, parser, model)
    except KeyboardInterrupt:
        after = _file_identity(args.output)
        if after != before or (before is not None and not args.output.is_file()):
            # A pipe or device receives the rows as they are written.
            raise
        state = "was not written" if before is None else "is unchanged"
        raise KeyboardInterrupt(f"interrupted; {args.output} {state}") from None


# Extensions that give text output, as a name without one does. The pos/neg
# input files are text too. OUTPUT_EXTENSIONS names the other formats.
TEXT_OUTPUT_EXTENSIONS = (".txt", ".text", ".out", ".log", ".pos", ".neg")
COMPRESSED_EXTENSIONS = (".gz", ".bz2", ".xz", ".zst", ".zip", ".7z")


def _check_output_name(
    output: Path, output_format: str | None, parser: argparse.ArgumentParser
) -> None:
    """Reject an output that would replace a model file, or of an unknown format."""
    from sentiment_lstm.artifact import model_folder_of
    from sentiment_lstm.scoring import OUTPUT_EXTENSIONS

    folder = model_folder_of(output)
    if folder is not None:
        raise CommandError(
            f"the output {output} is a file of the model in {folder}, which the "
            "scores would replace; write them outside that folder"
        )
    suffix = output.suffix.lower()
    if suffix in COMPRESSED_EXTENSIONS:
        parser.error(
            f"--output {output}: output is not compressed, so a {suffix} file "
            f"would hold plain text; name it without {suffix}, such as "
            f"{output.with_suffix('')}, and compress it afterwards"
        )
    if output_format is not None or not suffix:
        return
    if suffix == ".json":
        parser.error(
            f"--output {output}: results are written as one JSON object per "
            "line (JSON Lines), not as one JSON document; name the file .jsonl, "
            "or add --format jsonl to write JSON lines to this name"
        )
    if suffix in OUTPUT_EXTENSIONS or suffix in TEXT_OUTPUT_EXTENSIONS:
        return
    parser.error(
        f"--output {output}: unknown output format {suffix}; name the file .csv, "
        ".tsv, .jsonl or .txt, or pass --format with text, csv, tsv or jsonl"
    )


def _file_identity(path: Path) -> tuple[int, int, int] | None:
    """Return what changes when a file is replaced or written, or None if absent."""
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_ino, status.st_size, status.st_mtime_ns


def _check_line_buffered(
    args: argparse.Namespace, parser: argparse.ArgumentParser
) -> None:
    """Exit with a usage error where --line-buffered cannot apply."""
    if args.reviews or args.input is not None:
        parser.error(
            "--line-buffered reads the reviews from stdin; pipe them in, or "
            "drop --line-buffered"
        )
    if args.output is not None:
        parser.error(
            "--line-buffered writes each result to stdout as it comes; drop "
            "--output and redirect stdout, or drop --line-buffered to write "
            f"{args.output} once every review is scored"
        )
    if args.data_format not in (None, "lines"):
        parser.error(
            f"--line-buffered reads one review a line, not "
            f"{args.data_format}; drop --input-format {args.data_format}, or "
            "drop --line-buffered"
        )


def _score(args: argparse.Namespace, parser: argparse.ArgumentParser, model) -> int:
    """Score the reviews of the arguments, --input or stdin."""
    if _progress_setting(args) is None and sys.stderr is not None:
        from tqdm.contrib.logging import logging_redirect_tqdm

        # Log lines go above a progress bar instead of onto its line.
        with logging_redirect_tqdm():
            return _score_reviews(args, parser, model)
    return _score_reviews(args, parser, model)


def _score_reviews(
    args: argparse.Namespace, parser: argparse.ArgumentParser, model
) -> int:
    if args.input:
        return _run_input_file(args, model)
    if args.reviews:
        _warn_about_file_options(args)
        reviews = [_utf8_argument(review) for review in args.reviews]
        predictions = _predict_arguments(model, reviews, args.batch_size)
        _write_predictions_to_output(args, predictions)
        return 0
    if sys.stdin is None:
        parser.error("stdin is closed; give reviews as arguments or with --input FILE")
    stream = getattr(sys.stdin, "buffer", None)
    if args.line_buffered and stream is not None and not sys.stdin.isatty():
        _score_lines_as_they_come(args, model, stream)
        return 0
    if sys.stdin.isatty():
        if not args.stdin_requested:
            parser.error(
                "give reviews as arguments, with --input FILE, or on stdin; "
                "'-' reads them from the terminal"
            )
        if (
            stream is not None
            and args.output is None
            and args.data_format in (None, "lines")
        ):
            logger.warning(
                "reading reviews from the terminal, one per line; each is "
                "scored when you press Enter, and Ctrl-D on a new line ends"
            )
            _score_lines_as_they_come(args, model, stream)
            return 0
        logger.warning(
            "reading reviews from the terminal, one per line; "
            "press Ctrl-D on a new line to score them"
        )
    if stream is None:
        # A text stream without bytes underneath, as in embedding programs.
        texts = _split_lines(sys.stdin.read())
        _write_predictions_to_output(
            args, model.predict(texts, batch_size=args.batch_size)
        )
        return 0
    _score_stdin(args, model, stream)
    return 0


def _warn_about_file_options(args: argparse.Namespace) -> None:
    """Warn about options that only reading --input or stdin uses."""
    ignored = [
        flag
        for flag, value in (
            ("--input-format", args.data_format),
            ("--text-column", args.text_column),
            ("--skip-bad-rows", args.skip_bad_rows),
        )
        if value
    ]
    if not ignored:
        return
    names = (
        ignored[0]
        if len(ignored) == 1
        else f"{', '.join(ignored[:-1])} and {ignored[-1]}"
    )
    logger.warning(
        "%s %s no effect on reviews given as arguments; %s to --input and stdin",
        names,
        "has" if len(ignored) == 1 else "have",
        "it applies" if len(ignored) == 1 else "they apply",
    )


def _replace_unencodable_on_stdout() -> None:
    """Make stdout replace what it cannot encode instead of raising.

    Undecodable input bytes, kept as lone surrogates, become U+FFFD. Characters
    that a non-UTF-8 stdout encoding lacks, as under an ASCII or Latin-1
    locale, become "?".
    """
    from sentiment_lstm.scoring import OUTPUT_ERRORS

    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors=OUTPUT_ERRORS)


def _copy_to_end(stream: BinaryIO, spool: BinaryIO) -> None:
    """Copy stream into spool up to the first empty read.

    ``read1`` makes at most one system call, so a Ctrl-D typed on a terminal
    ends the copy at once. ``read(n)`` would take that empty read as the end
    of one call only and then wait for a second Ctrl-D.
    """
    read = getattr(stream, "read1", stream.read)
    with _blocking(stream):
        while chunk := read(STDIN_COPY_BYTES):
            spool.write(chunk)


@contextlib.contextmanager
def _blocking(stream: BinaryIO) -> Iterator[None]:
    """Make reads of stream's descriptor wait for bytes, as long as the block runs.

    Some programs leave a terminal or a pipe non-blocking, and then a read
    with no bytes yet would look like the end of the input.
    """
    try:
        descriptor = stream.fileno()
        blocking = os.get_blocking(descriptor)
    except (OSError, ValueError):
        # No descriptor, as with an in-memory stream.
        yield
        return
    if blocking:
        yield
        return
    os.set_blocking(descriptor, True)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.set_blocking(descriptor, False)


def _score_lines_as_they_come(
    args: argparse.Namespace, model, stream: BinaryIO
) -> None:
    """Score the lines of a terminal or pipe as they come, and write each result.

    A terminal passes its input on when Enter is pressed, so each read
    returns the lines typed or pasted since the last one. A pipe's read
    returns what has arrived. The whole lines of each read are scored and
    written at once. A line is read like an argument review: as UTF-8, and
    with a byte invalid in UTF-8 it is not scored.
    """
    output_format = args.output_format or "text"
    read = getattr(stream, "read1", stream.read)
    header = True
    unfinished = b""
    with _blocking(stream):
        while chunk := read(STDIN_COPY_BYTES):
            *lines, unfinished = (unfinished + chunk).split(b"\n")
            if lines:
                _write_typed(args, model, lines, output_format, header)
                header = False
    if unfinished:
        # The last line without a line end, or typed before a Ctrl-D without
        # Enter.
        _write_typed(args, model, [unfinished], output_format, header)


def _write_typed(
    args: argparse.Namespace,
    model,
    lines: list[bytes],
    output_format: str,
    header: bool,
) -> None:
    """Score lines read from a terminal or pipe and write their results to stdout."""
    from sentiment_lstm.data import DataError
    from sentiment_lstm.scoring import write_to_stream

    reviews = [
        line.removesuffix(b"\r").decode("utf-8", "surrogateescape") for line in lines
    ]
    predictions = _predict_arguments(model, reviews, args.batch_size)

    def write(stream: TextIO) -> None:
        write_predictions(predictions, output_format, stream, header=header)

    try:
        # write_to_stream flushes, so each result shows before the next line.
        write_to_stream("stdout", sys.stdout, write)
    except DataError as err:
        raise CommandError(str(err)) from err


def _score_stdin(
    args: argparse.Namespace, model, stream: BinaryIO, source: str = "stdin"
) -> None:
    """Score stdin in chunks, as a file of --input-format (default: lines) is.

    The encoding is chosen from all of the bytes, as for a file, so stdin is
    first copied to a file in a new temporary folder that only this user can
    read. Memory use then stays flat however much is piped in. A named pipe
    given as --input, such as the /dev/fd/63 of bash's ``<(command)``, is
    read the same way, with its name as ``source``.
    """
    from sentiment_lstm.data import DataError
    from sentiment_lstm.data.readers import EXTENSION_FORMATS

    try:
        options = read_options_from_args(args, require_labels=False)
    except DataError as err:
        raise CommandError(str(err)) from err
    if options.format is None:
        # A named pipe such as reviews.csv made by mkfifo has an extension,
        # which _check_pipe_format checked before the pipe was opened.
        data_format = "lines"
        if source != "stdin":
            data_format = EXTENSION_FORMATS[Path(source).suffix.lower()]
        options = dataclasses.replace(options, format=data_format)
    if options.format not in STREAMED_INPUT_FORMATS:
        raise CommandError(
            f"{source} cannot be read as {options.format}; pipe CSV, TSV, JSONL "
            "or one review per line with --input-format csv, tsv, jsonl or "
            "lines, or pass the files with --input",
            usage=True,
        )

    with tempfile.TemporaryDirectory(prefix="sentiment-lstm-stdin-") as folder:
        copy = Path(folder) / "stdin.txt"
        try:
            with open(copy, "wb") as spool:
                _copy_to_end(stream, spool)
        except KeyboardInterrupt:
            output = "stdout" if args.output is None else str(args.output)
            raise KeyboardInterrupt(
                f"stopped while reading {source}; nothing was written to {output}"
            ) from None
        except OSError as err:
            copy_note = ""
            if err.errno in (errno.ENOSPC, errno.EDQUOT):
                copy_note = (
                    f" ({source} is copied in full before it is scored, so an "
                    "endless stream such as /dev/zero fills any disk)"
                )
            raise CommandError(
                f"cannot copy {source} to a temporary file in {folder}: "
                f"{err.strerror or err}{copy_note}; set TMPDIR to a folder with "
                "more free space, or pass the reviews in a regular file with "
                "--input"
            ) from err
        _score_streamed(args, model, copy, options, source)


def _score_streamed(
    args: argparse.Namespace,
    model,
    path: Path,
    options: Any,
    source: str | None = None,
) -> None:
    """Score a CSV, TSV, JSONL or text file in chunks into the output.

    ``source`` names the input in messages, such as "stdin" for its
    temporary copy; None names ``path``.
    """
    from sentiment_lstm.data import DataError
    from sentiment_lstm.scoring import score_file

    try:
        score_file(
            model,
            path,
            args.output if args.output is not None else sys.stdout,
            output_format=args.output_format,
            options=options,
            chunk_rows=args.chunk_size,
            batch_size=args.batch_size,
            progress=_progress_setting(args),
            source=source,
        )
    except (DataError, ValueError) as err:
        raise CommandError(str(err)) from err


def _progress_setting(args: argparse.Namespace) -> bool | None:
    """Return score_file's progress argument: None (on a terminal) or False.

    The bar is hidden when the results go to stdout, and with --no-progress
    or -q, as in evaluate.
    """
    if args.progress and args.output is not None and not args.quiet:
        return None
    return False


def _run_input_file(args: argparse.Namespace, model) -> int:
    from sentiment_lstm.data import DataError
    from sentiment_lstm.data.readers import detect_format

    if _is_pipe_or_device(args.input):
        _reject_output_among_inputs(args.output, [args.input])
        _check_pipe_format(args)
        try:
            stream = open(args.input, "rb")
        except OSError as err:
            raise CommandError(
                f"cannot read {args.input}: {err.strerror or err}; check that "
                "the pipe or device exists and that you may read it"
            ) from err
        with stream:
            _score_stdin(args, model, stream, source=str(args.input))
        return 0
    try:
        options = read_options_from_args(args, require_labels=False)
        data_format = options.format or detect_format(args.input, "--input-format")
    except DataError as err:
        raise CommandError(str(err)) from err

    if data_format in STREAMED_INPUT_FORMATS:
        if args.output is None:
            _reject_stdout_among_inputs([args.input])
        _score_streamed(args, model, args.input, options)
        return 0
    if data_format == "posneg":
        return _score_pair(args, model, options)
    return _score_folder(args, model, options)


def _check_pipe_format(args: argparse.Namespace) -> None:
    """Raise unless the format of a named pipe is given or in its name.

    A pipe without an extension, such as bash's <(command), needs
    --input-format; it is checked before opening the pipe, which waits for
    a writer.
    """
    from sentiment_lstm.data.readers import EXTENSION_FORMATS

    if args.data_format is None and args.input.suffix.lower() not in EXTENSION_FORMATS:
        raise CommandError(
            f"cannot detect the data format of the {_special_file_kind(args.input)} "
            f"{args.input} from its name; pass --input-format csv, tsv, jsonl or "
            "lines (one review a line)",
            usage=True,
        )


def _is_pipe_or_device(path: Path) -> bool:
    """Return whether path is a named pipe, socket or character device."""
    return _special_file_kind(path) is not None


def _special_file_kind(path: Path) -> str | None:
    """Return "pipe", "device" or "socket" for such a path, else None."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if stat.S_ISFIFO(mode):
        return "pipe"
    if stat.S_ISCHR(mode):
        return "device"
    if stat.S_ISSOCK(mode):
        return "socket"
    return None


def _score_pair(args: argparse.Namespace, model: Any, options: Any) -> int:
    """Score both files of a pos/neg pair, chunk by chunk: negative, then positive."""
    from sentiment_lstm.data import DataError
    from sentiment_lstm.data.line_files import find_posneg_pair, scan_line_file
    from sentiment_lstm.data.readers import check_read_options
    from sentiment_lstm.scoring import check_output_path

    if args.input.is_file():
        _require_posneg_partner(args.input)
    try:
        check_read_options(args.input, "posneg", options)
        files = find_posneg_pair(args.input)
        folder = args.input if args.input.is_dir() else args.input.parent
        _reject_output_in_folder(args.output, folder, "posneg")
        _reject_output_among_inputs(args.output, files)
        if args.output is not None:
            check_output_path(args.output)
        else:
            _reject_stdout_among_inputs(files)
        # Both files are scanned for their encodings first, so that a file
        # that cannot be read stops the command before anything is written.
        line_files = [scan_line_file(path) for path in files]
    except DataError as err:
        raise CommandError(str(err)) from err
    reviews = (
        (str(line_file.path), review)
        for line_file in line_files
        for review in line_file.reviews()
    )
    return _score_located_reviews(args, model, reviews)


def _score_folder(args: argparse.Namespace, model: Any, options: Any) -> int:
    """Score the review files of a folder in chunks, one file at a time."""
    from sentiment_lstm.data import DataError
    from sentiment_lstm.data.folders import folder_reviews, review_files
    from sentiment_lstm.data.readers import check_read_options
    from sentiment_lstm.scoring import check_output_path

    _reject_output_in_folder(args.output, args.input, "folder")
    try:
        check_read_options(args.input, "folder", options)
        if args.output is not None:
            check_output_path(args.output)
        files = review_files(args.input, training=False)
    except DataError as err:
        raise CommandError(str(err)) from err
    if not files:
        raise CommandError(
            f"{args.input}: no reviews found: its pos/ and neg/ folders hold no "
            "*.txt files; check the path"
        )
    # Checked before anything is written: a *.txt link in the folder may
    # lead to the output file, or stdout may be appended to a review file.
    paths = [file for file, _ in files]
    _reject_output_among_inputs(args.output, paths)
    if args.output is None:
        _reject_stdout_among_inputs(paths)
    reviews = (
        (str(file), review) for file, review in folder_reviews(args.input, files)
    )
    return _score_located_reviews(args, model, reviews, total=len(files))


def _score_located_reviews(
    args: argparse.Namespace,
    model: Any,
    reviews: Iterator[tuple[str, Any]],
    total: int | None = None,
) -> int:
    """Score (file, LineReview) pairs into the output, with the file and line.

    Each result starts with its file and line; a review that cannot be scored
    keeps its place with the reason. The reviews are read, scored and
    written in chunks, so memory does not grow with the input. ``total`` is
    the number of reviews, where known, for the progress bar.
    """
    from sentiment_lstm.data import DataError
    from sentiment_lstm.scoring import output_format_for, write_output, write_to_stream

    output_format = args.output_format or output_format_for(args.output)
    started = time.perf_counter()
    counts = _ResultCounts()

    def write(stream: TextIO) -> None:
        _write_located_results(
            args, model, reviews, output_format, stream, counts, total
        )

    try:
        if args.output is None:
            write_to_stream("stdout", sys.stdout, write)
        else:
            write_output(args.output, write)
    except DataError as err:
        raise CommandError(str(err)) from err
    logger.info(
        "scored %d of %d reviews of %s in %.1f s",
        counts.rows - counts.unscored,
        counts.rows,
        args.input,
        time.perf_counter() - started,
    )
    if counts.unscored == 1:
        logger.warning(
            "1 review of %s was not scored; its result gives the reason", args.input
        )
    elif counts.unscored:
        logger.warning(
            "%d reviews of %s were not scored; their results give the reasons",
            counts.unscored,
            args.input,
        )
    _warn_of_replaced_names(counts.replaced_names)
    return 0


@dataclasses.dataclass
class _ResultCounts:
    rows: int = 0
    unscored: int = 0
    # Files whose names CSV, TSV or JSON lines write with U+FFFD for bytes
    # invalid in UTF-8.
    replaced_names: set[str] = dataclasses.field(default_factory=set)


def _write_located_results(
    args: argparse.Namespace,
    model: Any,
    reviews: Iterator[tuple[str, Any]],
    output_format: str,
    stream: TextIO,
    counts: _ResultCounts,
    total: int | None = None,
) -> None:
    """Score and write (file, LineReview) pairs in chunks of --chunk-size."""
    from sentiment_lstm.data.collector import EMPTY_REVIEW_REASON
    from sentiment_lstm.predictor import EMPTY_REVIEW, Prediction
    from sentiment_lstm.scoring import CHUNK_CHARS, progress_bar, score_chunks

    def chunks():
        # A chunk ends at --chunk-size reviews or CHUNK_CHARS characters, as
        # in score_file. Reviews that cannot be scored go in as empty texts,
        # which get no score.
        chunk = []
        chars = 0
        for source, review in reviews:
            chunk.append((source, review))
            chars += len(review.text)
            if len(chunk) == args.chunk_size or chars >= CHUNK_CHARS:
                yield chunk, _texts_to_score(chunk)
                chunk = []
                chars = 0
        if chunk:
            yield chunk, _texts_to_score(chunk)

    bar = progress_bar(_progress_setting(args), total=total)
    scored_chunks = score_chunks(model, chunks(), args.batch_size)
    try:
        with contextlib.closing(scored_chunks):
            for chunk, positive in scored_chunks:
                results = []
                for (_, review), probability in zip(chunk, positive):
                    if review.reason is None and probability == probability:
                        label = "positive" if probability >= 0.5 else "negative"
                        results.append(
                            Prediction(
                                review.text, probability, 1.0 - probability, label
                            )
                        )
                        continue
                    # An empty line gets the reason of any review without tokens.
                    reason = review.reason
                    if reason is None or reason == EMPTY_REVIEW_REASON:
                        reason = EMPTY_REVIEW
                    results.append(Prediction(review.text, None, None, None, reason))
                write_predictions(
                    results,
                    output_format,
                    stream,
                    [(source, review.line) for source, review in chunk],
                    header=counts.rows == 0,
                )
                counts.rows += len(results)
                counts.unscored += sum(result.error is not None for result in results)
                if output_format != "text":
                    counts.replaced_names.update(
                        source for source, _ in chunk if _INVALID_BYTE.search(source)
                    )
                if bar is not None:
                    bar.update(len(results))
        if counts.rows == 0:
            # No reviews: a CSV or TSV output still gets its header.
            write_predictions([], output_format, stream, [])
    except KeyboardInterrupt as err:
        err.rows_written = counts.rows  # type: ignore[attr-defined]
        raise
    finally:
        if bar is not None:
            bar.close()


def _texts_to_score(chunk: Sequence[tuple[str, Any]]) -> list[str]:
    """Return the reviews of a chunk, blank for those that cannot be scored."""
    return ["" if review.reason is not None else review.text for _, review in chunk]


def _require_posneg_partner(path: Path) -> None:
    """Log the pair that a .pos or .neg file is scored in, or raise if it has none."""
    from sentiment_lstm.data import DataError
    from sentiment_lstm.data.line_files import find_posneg_pair

    try:
        negative, positive = find_posneg_pair(path)
    except DataError as err:
        raise CommandError(
            f"{err}; to score {path} alone, one review a line, add "
            "--input-format lines"
        ) from err
    logger.info(
        "scoring both files of the pair %s and %s; to score %s alone, add "
        "--input-format lines",
        negative,
        positive,
        path,
    )


def _predict_arguments(model: Any, reviews: list[str], batch_size: int) -> list[Any]:
    """Score argument reviews; one with a byte invalid in UTF-8 is not scored.

    Python keeps such a byte of an argument as a lone surrogate, as it does
    in files and on stdin, whose rows with one are left unscored too.
    """
    from sentiment_lstm.data.decoding import DecodedText, invalid_byte_reason
    from sentiment_lstm.predictor import Prediction

    escaped = DecodedText("", "utf-8", "surrogateescape")
    errors = [invalid_byte_reason(review, escaped) for review in reviews]
    scorable = [review for review, error in zip(reviews, errors) if error is None]
    scored = iter(model.predict(scorable, batch_size=batch_size))
    return [
        next(scored) if error is None else Prediction(review, None, None, None, error)
        for review, error in zip(reviews, errors)
    ]


def _utf8_argument(text: str) -> str:
    """Return a command-line argument read as UTF-8 where the locale could not.

    Under a non-UTF-8 locale such as C without Python's UTF-8 mode, Python
    keeps each byte it cannot decode as a lone surrogate, which the encoder
    would turn into U+FFFD.
    """
    try:
        return os.fsencode(text).decode("utf-8")
    except UnicodeError:
        return text


def _reject_output_in_folder(
    output: Path | None, folder: Path, data_format: str
) -> None:
    """Raise if the output path lies in the folder of review files being read.

    A folder of a pos/neg pair is read for its *.pos and *.neg files alone,
    so only a new output with one of those suffixes is rejected there.
    """
    if output is None or str(output) == "-":
        return
    # A link is followed, as the write follows it: a broken one to x.pos in
    # the folder would create that file.
    target = Path(os.path.realpath(output))
    inside = target.is_relative_to(folder.resolve())
    if data_format == "posneg":
        # An existing file is checked against the input files separately.
        suffix = target.suffix.lower()
        if inside and not target.exists() and suffix in (".pos", ".neg"):
            through = f" (a link to {target})" if output.is_symlink() else ""
            raise CommandError(
                f"the output {output}{through} would be a second *{suffix} file in "
                f"the input folder {folder}, which a later run could not read as "
                "one pair; name it otherwise or write it outside the folder"
            )
        return
    if inside:
        through = f" (a link to {target})" if output.is_symlink() else ""
        raise CommandError(
            f"the output {output}{through} is inside the input folder {folder}, where a "
            "later run would read it as a review if it were a .txt file in pos/ "
            "or neg/, and list it as ignored otherwise; write the scores outside "
            "the folder"
        )


def _stdout_file() -> os.stat_result | None:
    """Return the status of stdout where it is a regular file, else None."""
    try:
        status = os.fstat(sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):
        # No descriptor, as under a test's capture, or a closed stdout.
        return None
    return status if stat.S_ISREG(status.st_mode) else None


def _reject_stdout_among_inputs(inputs: Sequence[Path]) -> None:
    """Raise if stdout is one of the input files, as with ``>> reviews.txt``.

    The results would be appended to the file being read, and the run would
    read them back without end.
    """
    stdout = _stdout_file()
    if stdout is None:
        return
    for path in inputs:
        try:
            status = os.stat(path)
        except OSError:
            continue
        if (status.st_dev, status.st_ino) == (stdout.st_dev, stdout.st_ino):
            raise CommandError(
                f"stdout is the input file {path}, so the run would read its own "
                "results; write them to another file with --output or a "
                "redirection"
            )


def _reject_output_among_inputs(output: Path | None, inputs: Sequence[Path]) -> None:
    """Raise if the output path is one of the files that the reviews came from.

    The output replaces its path only after scoring, but it would still
    replace the reviews of that input file with their scores.
    """
    from sentiment_lstm.scoring import same_file

    if output is None:
        return
    for path in inputs:
        if same_file(path, output):
            raise CommandError(
                f"the output {output} is the input file {path}; write the scores "
                "to another path"
            )


def _write_predictions_to_output(
    args: argparse.Namespace,
    predictions: Sequence,
    origins: Sequence[tuple[str, int]] | None = None,
) -> None:
    from sentiment_lstm.data import DataError
    from sentiment_lstm.scoring import output_format_for, write_output, write_to_stream

    output_format = args.output_format or output_format_for(args.output)

    def write(stream: TextIO) -> None:
        write_predictions(predictions, output_format, stream, origins)

    try:
        if args.output is None:
            write_to_stream("stdout", sys.stdout, write)
        else:
            # The results go to a temporary file that replaces the output only
            # when complete, so a failed or interrupted write leaves an
            # earlier file whole.
            write_output(args.output, write)
    except DataError as err:
        raise CommandError(str(err)) from err


def _warn_of_replaced_names(names: set[str]) -> None:
    """Log the file names whose invalid bytes the results replace with U+FFFD."""
    if not names:
        return
    example = sorted(names)[0]
    logger.warning(
        "%s with bytes invalid in UTF-8, such as %s, %s written with U+FFFD in "
        "place of those bytes, so such names may look alike; --format text "
        "writes each of those bytes as an escape, as in %s",
        "1 file name" if len(names) == 1 else f"{len(names)} file names",
        _text_file_name(example),
        "is" if len(names) == 1 else "are",
        ascii(_INVALID_BYTE.search(example)[0])[1:-1],
    )


def _split_lines(text: str) -> list[str]:
    """Return one review per line, keeping blank lines but those at the end.

    Blank lines between reviews keep their rows, so rows never shift.
    """
    lines = [line.rstrip("\r") for line in text.split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def write_predictions(
    predictions: Sequence,
    output_format: str,
    stream: TextIO,
    origins: Sequence[tuple[str, int]] | None = None,
    *,
    header: bool = True,
) -> None:
    """Write predictions as text lines, JSON lines, or CSV or TSV rows.

    Scores have 6 decimals, as in scored files. With ``origins``, the
    (file, line) each review was read from, every result starts with them:
    ``file`` and ``line`` columns or keys, or ``file:line`` in text lines.
    ``header`` False leaves out the header row of CSV or TSV, for results
    written in parts.
    """
    from sentiment_lstm.scoring import DelimitedRowWriter, format_line

    located = zip(predictions, origins if origins is not None else repeat(None))
    if output_format == "jsonl":
        for prediction, origin in located:
            stream.write(_json_line(prediction, origin) + "\n")
    elif output_format in ("csv", "tsv"):
        writer = DelimitedRowWriter(stream, "\t" if output_format == "tsv" else ",")
        if header:
            names = ["text", "positive", "negative", "label", "error"]
            writer.writerow(names if origins is None else ["file", "line", *names])
        for prediction, origin in located:
            row = _csv_row(prediction)
            writer.writerow(
                row if origin is None else [origin[0], str(origin[1]), *row]
            )
    else:
        for prediction, origin in located:
            line = format_line(
                prediction.text, prediction.positive, prediction.label, prediction.error
            )
            if origin is not None:
                line = f"{_text_file_name(origin[0])}:{origin[1]}  {line}"
            stream.write(line + "\n")


def _text_file_name(name: str) -> str:
    """Return a file name for a text result line, quoted if it could break the line.

    A name with a control character or a line or paragraph separator is
    written as a JSON string with those characters escaped, so that the line
    stays one line and its columns stay in place. So is a name with bytes
    invalid in UTF-8, each written as the JSON escape of the surrogate that
    stands for it, and a name that starts with a double quote, which would
    otherwise read as quoted.
    """
    if not name.startswith('"') and not _UNSAFE_IN_LINE.search(name):
        return name
    # json.dumps escapes the characters below U+0020, not the others.
    quoted = json.dumps(name, ensure_ascii=False)
    return _UNSAFE_IN_LINE.sub(lambda match: f"\\u{ord(match[0]):04x}", quoted)


def _csv_row(prediction) -> list[str]:
    if prediction.error is not None:
        return [prediction.text, "", "", "", prediction.error]
    return [
        prediction.text,
        f"{prediction.positive:.6f}",
        f"{prediction.negative:.6f}",
        prediction.label,
        "",
    ]


def _json_line(prediction, origin: tuple[str, int] | None) -> str:
    """Return one result as a JSON object, keys in the order of scored files."""
    members = []
    if origin is not None:
        members += [f'"file": {_json_string(origin[0])}', f'"line": {origin[1]}']
    members.append(f'"text": {_json_string(prediction.text)}')
    if prediction.error is None:
        members += [
            f'"positive": {prediction.positive:.6f}',
            f'"negative": {prediction.negative:.6f}',
            f'"label": "{prediction.label}"',
        ]
    else:
        members += [
            '"positive": null',
            '"negative": null',
            '"label": null',
            f'"error": {_json_string(prediction.error)}',
        ]
    return "{" + ", ".join(members) + "}"


def _json_string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)
