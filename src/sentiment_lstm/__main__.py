"""Entry point of the ``sentiment-lstm`` program and of ``python -m sentiment_lstm``."""

import signal
import sys


def run() -> None:
    """Import the command line and run it, exiting with the command's status."""
    try:
        # The command line imports its subcommands, which takes a moment. A
        # Ctrl-C then would end in a traceback of the import; it ends with
        # the status and message of an interrupted command instead.
        from sentiment_lstm.cli import console_main
    except KeyboardInterrupt:
        # print() would write to stdout where stderr was closed (2>&-).
        if sys.stderr is not None:
            print("interrupted", file=sys.stderr)
        sys.exit(128 + signal.SIGINT)
    console_main()


# The guard keeps worker processes, which import this module again when the
# package runs as "python -m sentiment_lstm", from running the command.
if __name__ == "__main__":
    run()
