"""Ctrl-C handling that library code cannot defeat.

Python raises KeyboardInterrupt wherever the main thread is when SIGINT
arrives. At the start of a command that is often inside the import code of a
library, and some of that code catches the exception and carries on, so the
command ran to the end as if Ctrl-C had not been pressed. While the command
line runs, :func:`remembering_interrupts` installs a handler that also records
the signal, and the long loops call :func:`check` at each step to raise it
again.

Outside the command line nothing is installed and :func:`check` does nothing.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

_pending = False


def _on_interrupt(signum: int, frame: FrameType | None) -> None:
    global _pending
    _pending = True
    raise KeyboardInterrupt


@contextlib.contextmanager
def remembering_interrupts() -> Iterator[None]:
    """Record each Ctrl-C for :func:`check` while the block runs.

    The handler is installed only in the main thread and only where SIGINT
    has Python's default handler, so an ignored SIGINT stays ignored.
    """
    global _pending
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    _pending = False
    previous = signal.signal(signal.SIGINT, _on_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _pending = False


def check() -> None:
    """Raise KeyboardInterrupt if a Ctrl-C arrived and library code caught it.

    Raises:
        KeyboardInterrupt: If SIGINT arrived inside :func:`remembering_interrupts`.
    """
    if _pending:
        raise KeyboardInterrupt
