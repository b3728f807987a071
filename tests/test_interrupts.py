"""A Ctrl-C that library code swallows is raised again at the next step."""

import os
import signal
import threading
import time

import pytest

from sentiment_lstm import interrupts


def send_ctrl_c() -> None:
    os.kill(os.getpid(), signal.SIGINT)
    # the handler runs in the main thread at the next bytecode
    time.sleep(0.5)


def test_swallowed_interrupt_raised_again(python_sigint_handler):
    with interrupts.remembering_interrupts():
        interrupts.check()
        try:
            send_ctrl_c()
        except KeyboardInterrupt:
            pass  # what some import code of libraries does
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()

    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    interrupts.check()


def test_ignored_interrupt_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with interrupts.remembering_interrupts():
            send_ctrl_c()
            interrupts.check()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_deferred_interrupt_raised_after_block(python_sigint_handler):
    finished = False

    with interrupts.remembering_interrupts():
        with pytest.raises(KeyboardInterrupt):
            with interrupts.deferred():
                send_ctrl_c()
                finished = True

    assert finished


def test_nested_deferred_raises_after_outer(python_sigint_handler):
    steps = []

    with interrupts.remembering_interrupts():
        with pytest.raises(KeyboardInterrupt):
            with interrupts.deferred():
                with interrupts.deferred():
                    send_ctrl_c()
                    steps.append("inner")
                steps.append("outer")

    assert steps == ["inner", "outer"]


def test_interrupt_replaces_error_of_deferred_block(python_sigint_handler):
    with interrupts.remembering_interrupts():
        with pytest.raises(KeyboardInterrupt) as raised:
            with interrupts.deferred():
                send_ctrl_c()
                # What an import raises when a signal arrives in its native code.
                raise ImportError("initialization failed")

    assert isinstance(raised.value.__context__, ImportError)


def test_deferred_block_error_without_interrupt(python_sigint_handler):
    with interrupts.remembering_interrupts():
        with pytest.raises(ImportError):
            with interrupts.deferred():
                raise ImportError("not installed")
        interrupts.check()


def test_deferred_in_other_thread_does_not_defer(python_sigint_handler):
    inside = threading.Event()
    release = threading.Event()

    def hold_deferred_block() -> None:
        with interrupts.deferred():
            inside.set()
            release.wait(timeout=30)

    with interrupts.remembering_interrupts():
        worker = threading.Thread(target=hold_deferred_block)
        worker.start()
        try:
            assert inside.wait(timeout=30)
            # The main thread gets Ctrl-C at once, not when the worker's
            # block ends.
            with pytest.raises(KeyboardInterrupt):
                send_ctrl_c()
        finally:
            release.set()
            worker.join(timeout=30)


def test_sigterm_deferred_while_sigint_ignored():
    # A shell without job control starts "command &" with SIGINT ignored.
    steps = []
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with interrupts.remembering_interrupts():
            with interrupts.sigterm_as_interrupt() as terminated:
                with pytest.raises(KeyboardInterrupt):
                    with interrupts.deferred():
                        os.kill(os.getpid(), signal.SIGTERM)
                        time.sleep(0.5)
                        steps.append("finished")
        interrupts.check()
    finally:
        signal.signal(signal.SIGINT, previous)

    assert steps == ["finished"]
    assert terminated.signal_number == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_deferred_outside_command_line_does_nothing(python_sigint_handler):
    with interrupts.deferred():
        interrupts.check()

    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.parametrize("moment", ["mkdir", "mkstemp"])
def test_interrupt_while_creating_output_dir_leaves_nothing(
    python_sigint_handler, tmp_path, monkeypatch, moment
):
    from pathlib import Path

    from sentiment_lstm.cli import train_output

    # Ctrl-C arrives right after a folder or the probe file is created.
    if moment == "mkdir":
        real = Path.mkdir

        def interrupted(self, *args, **kwargs):
            real(self, *args, **kwargs)
            send_ctrl_c()

        monkeypatch.setattr(Path, "mkdir", interrupted)
    else:
        real = train_output.tempfile.mkstemp

        def interrupted(*args, **kwargs):
            created = real(*args, **kwargs)
            send_ctrl_c()
            return created

        monkeypatch.setattr(train_output.tempfile, "mkstemp", interrupted)

    with interrupts.remembering_interrupts():
        with pytest.raises(KeyboardInterrupt):
            train_output.prepare_output_dir(tmp_path / "new" / "model")

    assert list(tmp_path.iterdir()) == []


def test_termination_ignored_once_done_at_program_exit(monkeypatch):
    # The program's entry point sets this, so that a SIGTERM after the
    # command has finished cannot kill it with the default action.
    monkeypatch.setattr(interrupts, "ignore_when_done", True)
    try:
        with interrupts.sigterm_as_interrupt():
            assert signal.getsignal(signal.SIGTERM) not in (
                signal.SIG_DFL,
                signal.SIG_IGN,
            )
        after = signal.getsignal(signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    assert after is signal.SIG_IGN
