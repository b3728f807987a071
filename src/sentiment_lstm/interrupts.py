"""Ctrl-C and SIGTERM handling that library code cannot defeat.

Python raises KeyboardInterrupt wherever the main thread is when SIGINT
arrives. At the start of a command that is often inside the import code of a
library. Python drops a KeyboardInterrupt raised in a weakref callback, such
as those of the import lock, with an "Exception ignored" message, and some
library code catches the exception and carries on. The command then ran to
the end as if Ctrl-C had not been pressed.

While the command line runs, :func:`remembering_interrupts` installs a
handler that also records the signal. The slow imports run inside
:func:`deferred`, which defers Ctrl-C until they end, and the long loops
call :func:`check` at each step to raise an interrupt that was caught on the
way. :func:`sigterm_as_interrupt` turns SIGTERM, and SIGHUP where asked, into
KeyboardInterrupt too, so that commands clean up after ``kill``, ``timeout``,
``docker stop`` or a closed terminal.

Outside the command line nothing is installed and :func:`check` does nothing.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

_pending = False
_deferring = False
# How many of this module's handlers are installed: deferring works with the
# SIGTERM handler alone too, as when SIGINT was ignored from the start, which
# is how a shell without job control starts a command run with "&".
_installed = 0
# Set by the program's entry point: termination signals that arrive after the
# command has finished are ignored instead of getting their default action.
ignore_when_done = False


def _on_interrupt(signum: int, frame: FrameType | None) -> None:
    global _pending
    _pending = True
    if not _deferring:
        raise KeyboardInterrupt


@contextlib.contextmanager
def remembering_interrupts() -> Iterator[None]:
    """Record each Ctrl-C for :func:`check` while the block runs.

    The handler is installed only in the main thread and only where SIGINT
    has Python's default handler, so an ignored SIGINT stays ignored.
    """
    global _pending, _installed
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    if not _installed:
        _pending = False
    previous = signal.signal(signal.SIGINT, _on_interrupt)
    _installed += 1
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _uninstalled()


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold back Ctrl-C and SIGTERM until the block ends, then raise KeyboardInterrupt.

    Only in the main thread, which receives the signals, and only inside
    :func:`remembering_interrupts` or :func:`sigterm_as_interrupt` where they
    installed a handler; elsewhere the block runs unchanged. Blocks may nest.

    Raises:
        KeyboardInterrupt: After the block, if a signal arrived before or in
            it, also in place of an exception that the block raised. A
            library's import can turn the interrupt into an ImportError, which
            must not pass for a missing library.
    """
    global _deferring
    if not _installed or threading.current_thread() is not threading.main_thread():
        yield
        return
    # In a nested block the outermost one raises, once all of them end.
    outer = _deferring
    _deferring = True
    try:
        yield
    finally:
        _deferring = outer
        if not outer:
            check()


def check() -> None:
    """Raise KeyboardInterrupt if a Ctrl-C arrived and library code caught it.

    Raises:
        KeyboardInterrupt: If SIGINT arrived inside :func:`remembering_interrupts`.
    """
    if _pending:
        raise KeyboardInterrupt


class Termination:
    """The SIGTERM or SIGHUP that arrived while a command ran, if any.

    Attributes:
        signal_number: The signal's number, or None before one arrives.
    """

    def __init__(self) -> None:
        self.signal_number: int | None = None

    def is_set(self) -> bool:
        """Return whether a termination signal has arrived."""
        return self.signal_number is not None


@contextlib.contextmanager
def sigterm_as_interrupt(*, hangup: bool = False) -> Iterator[Termination]:
    """Raise KeyboardInterrupt on SIGTERM, and with ``hangup`` on SIGHUP too.

    Python's default action for these signals ends the process at once, which
    would leave the temporary file of a half-written output behind. SIGHUP
    arrives when the command's terminal closes, such as on a lost SSH
    connection; Windows has no SIGHUP. The yielded Termination records the
    signal once one has arrived. Only the main thread can set a signal
    handler, and a signal that the parent process set to be ignored, as nohup
    does with SIGHUP, stays ignored.
    """
    terminated = Termination()
    names = ("SIGTERM", "SIGHUP") if hangup else ("SIGTERM",)
    termination_signals = [
        getattr(signal, name) for name in names if hasattr(signal, name)
    ]

    def interrupt(signum: int, frame: FrameType | None) -> None:
        terminated.signal_number = signum
        # As with Ctrl-C, deferred() defers it, and check() raises it
        # again if library code catches the exception.
        _on_interrupt(signum, frame)

    if threading.current_thread() is not threading.main_thread():
        yield terminated
        return
    global _installed, _pending
    previous = {
        signum: signal.signal(signum, interrupt)
        for signum in termination_signals
        if signal.getsignal(signum) is signal.SIG_DFL
    }
    if previous:
        if not _installed:
            _pending = False
        _installed += 1
    try:
        yield terminated
    finally:
        for signum, handler in previous.items():
            # The program's entry point ignores these signals once the
            # command is done. Ignoring them here already leaves no moment in
            # which the default action could kill a finished run.
            signal.signal(signum, signal.SIG_IGN if ignore_when_done else handler)
        if previous:
            _uninstalled()


def _uninstalled() -> None:
    """Count one handler less; with none left, forget a signal that arrived."""
    global _installed, _pending
    _installed -= 1
    if not _installed:
        _pending = False
