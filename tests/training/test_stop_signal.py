"""StopSignal: SIGTERM and the first Ctrl-C ask to stop at the next safe point; a second Ctrl-C aborts."""

from __future__ import annotations

import os
import signal

import pytest

from mmsent.training.stop_signal import StopSignal


def test_sigterm_is_recorded_not_fatal_and_the_handlers_are_restored(capsys):
    before = {n: signal.getsignal(n) for n in (signal.SIGTERM, signal.SIGINT)}
    with StopSignal() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested and stop.signal == signal.SIGTERM
    assert {n: signal.getsignal(n) for n in before} == before
    assert "SIGTERM: stopping at the next safe point" in capsys.readouterr().err


def test_a_second_ctrl_c_aborts_at_once(capsys):
    with StopSignal() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.signal == signal.SIGINT
        assert "Ctrl-C again to abort now" in capsys.readouterr().err
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_after_sigterm_still_only_asks_to_stop():
    # A job being stopped (SIGTERM) whose user then presses Ctrl-C once: still the safe way out.
    with StopSignal() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.signal == signal.SIGINT


def test_a_repeated_sigterm_and_a_forked_worker_say_nothing_more(capsys):
    """Ctrl-C reaches the whole process group, DataLoader workers (forked with the handler installed)
    included: only the process that installed it stops the run and says so, once."""
    with StopSignal() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
        assert capsys.readouterr().err.count("stopping at the next safe point") == 1
        child = os.fork()
        if child == 0:  # the worker: its copy of the handler must neither record nor print anything
            stop.signal = None
            os.kill(os.getpid(), signal.SIGINT)
            os._exit(0 if stop.signal is None else 1)
        _, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == 0
