"""The ``sentiment-lstm`` command line: argument parsing and wiring only.

Each subcommand lives in its own module with a ``register(subparsers)``
function that adds its parser and sets ``handler`` to the function that runs
it. Heavy imports (PyTorch) happen inside the handlers, so ``--help`` and the
serving commands start fast.
"""

from __future__ import annotations

import argparse
import datetime
import difflib
import errno
import logging
import os
import re
import signal
import sys
from collections.abc import Sequence
from typing import Any, NoReturn, TextIO

from sentiment_lstm import __version__, interrupts
from sentiment_lstm.cli import cross_validate, evaluate, export, predict, serve, train
from sentiment_lstm.cli.common import CommandError
from sentiment_lstm.files import write_failure_advice

COMMANDS = (train, predict, evaluate, serve, cross_validate, export)
# Exit status after stdout was closed early: a shell's status for SIGPIPE.
BROKEN_PIPE_STATUS = 128 + 13
# Exit status after Ctrl-C, as a shell reports a process that the signal
# ended. SIGTERM (from kill, timeout or docker stop) and SIGHUP give
# 128 + their number in the same way.
INTERRUPTED_STATUS = 128 + signal.SIGINT
# Commands in which SIGTERM raises KeyboardInterrupt, so that their temporary
# files are removed, train reports what it saved and removes a folder it
# created and left empty, and cross-validate writes the folds that finished.
# Ensemble members that cross-validate trains in worker processes are
# stopped by the main process, which alone receives a SIGTERM from kill.
SIGTERM_INTERRUPTS = frozenset(
    ("train", "cross-validate", "predict", "evaluate", "export", "serve")
)
# Commands in which SIGHUP, sent when their terminal closes, does the same,
# which is every one: Python's default would end train between writing an
# epoch's model and its checkpoint. While serve runs uvicorn, it hands
# SIGHUP to uvicorn's graceful shutdown like SIGTERM, and the exception
# follows once uvicorn has stopped. A SIGHUP ignored by the parent, as
# nohup does, stays ignored.
SIGHUP_INTERRUPTS = SIGTERM_INTERRUPTS


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose missing-argument error names mistyped flags.

    argparse reports a required flag such as --model as missing before it
    reports an unknown one such as --modle, which is often the same flag
    mistyped.
    """

    def error(self, message: str) -> NoReturn:
        if message.startswith("the following arguments are required"):
            unknown = [
                argument
                for argument in self.arguments
                if argument.startswith("--")
                and argument.split("=", 1)[0] not in self._option_string_actions
            ]
            hints = _flag_hints(self, unknown)
            if hints:
                message += f" ({hints})"
        message = one_line(message)
        if self.prog.split()[-1:] == ["serve"]:
            # serve's error line starts with the time and level, as its log
            # lines do. The usage above it stays as argparse prints it.
            self.print_usage(sys.stderr)
            record = logging.LogRecord(
                "sentiment_lstm",
                logging.ERROR,
                __file__,
                0,
                f"{self.prog}: error: {message}",
                None,
                None,
            )
            self.exit(2, _ServiceFormatter(SERVICE_LOG_FORMAT).format(record) + "\n")
        super().error(message)

    # The arguments being parsed, which main() sets.
    arguments: Sequence[str] = ()


def build_parser() -> argparse.ArgumentParser:
    """Return the parser for every subcommand."""
    # Abbreviations are off, so that --lr is an unknown flag rather than a
    # value for --lr-schedule, the flag it abbreviates.
    parser = _Parser(
        prog="sentiment-lstm",
        description="Train LSTM sentiment classifiers on reviews and use them.",
        allow_abbrev=False,
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    _add_logging_options(parser, default=False)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for command in COMMANDS:
        command.register(subparsers)
    # -v and -q also work after the command's name. Their default there is
    # SUPPRESS, so that leaving them out keeps a value given before it.
    for command_parser in subparsers.choices.values():
        _add_logging_options(command_parser, default=argparse.SUPPRESS)
        command_parser.allow_abbrev = False
    return parser


def _reject_unknown_arguments(args: argparse.Namespace, unknown: list[str]) -> None:
    """Exit with the command's usage for arguments it lacks, naming close flags."""
    command_parser = args.command_parser
    message = f"unrecognized arguments: {' '.join(unknown)}"
    hints = _flag_hints(command_parser, unknown)
    if hints:
        message += f" ({hints})"
    if args.command == "predict" and any(
        item.startswith("-") and item != "--version" for item in unknown
    ):
        message += "; put -- before reviews that start with -, as in -- '-5 stars'"
    command_parser.error(message)


def _flag_hints(parser: argparse.ArgumentParser, arguments: Sequence[str]) -> str:
    """Return "--x: did you mean --y?" for each unknown long flag with a likely match.

    An unknown flag gets up to three known flags that start with it, such as
    --architecture for --arch, or else the closest spelling. Suggestions use the
    hyphenated spellings, not the underscore aliases of the original flags.
    """
    flags = [
        flag
        for action in parser._actions
        for flag in action.option_strings
        if flag.startswith("--") and "_" not in flag
    ]
    hints = []
    for argument in arguments:
        name = argument.split("=", 1)[0]
        if not name.startswith("--"):
            continue
        spelled = name.replace("_", "-")
        if spelled == "--version" and spelled not in flags:
            hints.append(
                "--version: put it before the command, as in sentiment-lstm --version"
            )
            continue
        if spelled in flags:
            matches = [spelled]
        else:
            # Four letters at least, so that --lr suggests no --lr-schedule.
            prefixed = [flag for flag in flags if flag.startswith(spelled)]
            matches = prefixed[:3] if len(spelled) >= 6 else []
            if not matches:
                matches = difflib.get_close_matches(spelled, flags, n=1, cutoff=0.75)
        if len(matches) == 1:
            hints.append(f"{name}: did you mean {matches[0]}?")
        elif matches:
            listed = ", ".join(matches[:-1]) + " or " + matches[-1]
            hints.append(f"{name}: did you mean {listed}?")
    return "; ".join(hints)


def _add_logging_options(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=default,
        help="log debugging details",
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=default,
        help="log warnings and errors only",
    )


# Line breaks and other control characters, which a file name may contain.
_CONTROL_CHARACTERS = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(text: str) -> str:
    """Return text with its control characters escaped, as on one line."""
    return _CONTROL_CHARACTERS.sub(lambda match: ascii(match[0])[1:-1], text)


class _OneLineFormatter(logging.Formatter):
    """Formatter that keeps each message on one line, as a file name in it may not."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return one_line(super().formatMessage(record))


# Log lines of `serve`, a long-running service, start with their time and
# level; the other commands print the message alone.
SERVICE_LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"


class _ServiceFormatter(_OneLineFormatter):
    """Formatter whose time is ISO 8601 local time with milliseconds and UTC offset."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        moment = datetime.datetime.fromtimestamp(record.created).astimezone()
        return moment.isoformat(timespec="milliseconds")


# The formatter of the last line of serve, which starts with the time and level
# like its log lines, whatever the log level. None for the other commands.
_last_line_formatter: logging.Formatter | None = None


def configure_logging(verbose: bool, quiet: bool, *, service: bool = False) -> None:
    """Send log lines to stderr, so stdout carries only results."""
    global _last_line_formatter
    _last_line_formatter = _ServiceFormatter(SERVICE_LOG_FORMAT) if service else None
    level = logging.INFO
    if verbose:
        level = logging.DEBUG
    elif quiet:
        level = logging.WARNING
    if sys.stderr is None:
        # Descriptor 2 was closed (2>&-), so log lines have nowhere to go.
        handler: logging.Handler = logging.NullHandler()
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            _ServiceFormatter(SERVICE_LOG_FORMAT)
            if service
            else _OneLineFormatter("%(message)s")
        )
    logging.basicConfig(level=level, handlers=[handler])
    # PyTorch sets its own loggers to WARNING once its import completes. An
    # import cut short by Ctrl-C skips that, and its exit hooks would then
    # print statistics at INFO through the handler above.
    logging.getLogger("torch").setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return the exit status."""
    parser = build_parser()
    arguments = sys.argv[1:] if argv is None else list(argv)
    _Parser.arguments = arguments
    args, unknown = parser.parse_known_args(arguments)
    if unknown:
        _reject_unknown_arguments(args, unknown)
    configure_logging(args.verbose, args.quiet, service=args.command == "serve")
    if args.command not in SIGTERM_INTERRUPTS:
        return _run_command(args, interrupts.Termination())
    hangup = args.command in SIGHUP_INTERRUPTS
    with interrupts.sigterm_as_interrupt(hangup=hangup) as terminated:
        return _run_command(args, terminated)


def console_main() -> None:
    """Run the ``sentiment-lstm`` program and exit with the command's status."""
    interrupts.ignore_when_done = True
    try:
        status = main()
    except KeyboardInterrupt:
        # A second Ctrl-C or SIGTERM that arrived after the command had
        # handled the first one and printed its message, while the signal
        # handlers were being restored.
        status = INTERRUPTED_STATUS
    finally:
        # The command has finished. Python's shutdown can take a second
        # after PyTorch was used, and a Ctrl-C or SIGTERM then would only
        # turn the status of a finished run into 130 or 143.
        for name in ("SIGINT", "SIGTERM", "SIGHUP"):
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), signal.SIG_IGN)
    sys.exit(status)


class _WatchedStdout:
    """Stand in for sys.stdout and keep the error of a write that failed."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.error: OSError | None = None

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except OSError as err:
            self.error = err
            raise

    def flush(self) -> None:
        try:
            self.stream.flush()
        except OSError as err:
            self.error = err
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def _run_command(args: argparse.Namespace, terminated: interrupts.Termination) -> int:
    """Run the chosen subcommand and turn its expected failures into one line."""
    # sys.stdout is None where descriptor 1 was closed (>&-).
    watched = None if sys.stdout is None else _WatchedStdout(sys.stdout)
    if watched is not None:
        sys.stdout = watched
    try:
        return _run_watched(args, terminated, watched)
    finally:
        if watched is not None and sys.stdout is watched:
            sys.stdout = watched.stream


def _run_watched(
    args: argparse.Namespace,
    terminated: interrupts.Termination,
    watched: _WatchedStdout | None,
) -> int:
    """Run the subcommand, naming stdout when a write to it failed."""
    try:
        # Usage errors of a command print that command's usage line.
        with interrupts.remembering_interrupts():
            status = args.handler(args, args.command_parser) or 0
        # A full disk under a redirected stdout shows here, not at exit.
        if watched is not None:
            watched.flush()
        return status
    except CommandError as err:
        print_error(f"sentiment-lstm {args.command}: error: {err}")
        # A write to stdout that failed leaves text in its buffer.
        _silence_failed_stdout()
        return 2 if err.usage else 1
    except KeyboardInterrupt as err:
        # The message, if any, names what the command saved before the interruption.
        if terminated.is_set():
            print_error(
                str(err) or _termination_line(terminated.signal_number), logging.INFO
            )
            return 128 + terminated.signal_number
        print_error(str(err) or "interrupted", logging.INFO)
        return INTERRUPTED_STATUS
    except BrokenPipeError:
        # The process reading stdout has exited, as with "| head". Point stdout
        # at the null device so the flush at exit does not fail a second time.
        _point_stdout_at_null()
        return BROKEN_PIPE_STATUS
    except OSError as err:
        # A file the command needs cannot be read, or stdout cannot be written.
        if watched is not None and err is watched.error:
            message = _stdout_error_message(err)
        else:
            message = _os_error_message(err)
        print_error(f"sentiment-lstm {args.command}: error: {message}")
        _silence_failed_stdout()
        return 1


def _termination_line(signal_number: int) -> str:
    """Return the last line of a command that SIGTERM or SIGHUP stopped."""
    if signal_number == getattr(signal, "SIGHUP", None):
        return "hung up (SIGHUP)"
    return "terminated"


def print_error(text: str, level: int = logging.ERROR) -> None:
    """Print a command's last line on stderr, or nowhere where stderr was closed.

    print() writes to stdout when sys.stderr is None (2>&-), which would put
    the message among the results. The line of ``serve`` starts with the time
    and ``level`` like its log lines, even where ``-q`` hides its INFO lines.
    """
    if sys.stderr is None:
        return
    line = one_line(text)
    if _last_line_formatter is not None:
        record = logging.LogRecord(
            "sentiment_lstm", level, __file__, 0, line, None, None
        )
        line = _last_line_formatter.format(record)
    print(line, file=sys.stderr)


# Errors that a write to a full or failing disk gives, often without a file.
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO}


def _os_error_message(err: OSError) -> str:
    """Describe an OSError by its file, if any, its reason and a fix."""
    reason = err.strerror or str(err)
    if err.filename is None and err.errno in _WRITE_ERRNOS:
        return f"cannot write the output: {reason}"
    if err.filename is None:
        return reason
    message = f"{err.filename}: {reason}"
    if isinstance(err, PermissionError):
        message += "; check the file's permissions"
    return message


def _stdout_error_message(err: OSError) -> str:
    """Describe a failed write to stdout, which may have part of the output."""
    reason = err.strerror or str(err)
    if err.errno == errno.EBADF:
        return (
            f"stdout is not open for writing ({reason}), so nothing was written "
            "to it; redirect stdout to a file you can write to"
        )
    return (
        f"stdout: cannot write the output: {reason}; stdout may contain part of "
        f"the output{write_failure_advice(err)}"
    )


def _silence_failed_stdout() -> None:
    """Point stdout at the null device if it cannot take the buffered output."""
    if sys.stdout is None:
        return
    try:
        sys.stdout.flush()
    except OSError:
        _point_stdout_at_null()


def _point_stdout_at_null() -> None:
    """Make descriptor 1 the null device, where stdout has a descriptor."""
    try:
        descriptor = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        # A stream of the caller's without a descriptor, as with
        # contextlib.redirect_stdout, so there is nothing to redirect.
        return
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, descriptor)
    os.close(null)
