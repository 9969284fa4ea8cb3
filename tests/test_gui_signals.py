"""An idle window still ends on SIGTERM/SIGHUP: Python's handlers run while Qt's loop waits."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QEventLoop, QTimer  # noqa: E402

from radreview.gui.app import let_signal_handlers_run  # noqa: E402

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def test_a_signal_reaches_python_while_the_event_loop_waits(qapp) -> None:
    """Without the wake-up timer the handler would run only when the 20 s fallback timer wakes the loop."""
    loop = QEventLoop()
    handled: list[float] = []

    def on_signal(number, frame) -> None:  # noqa: ARG001 - signal handler signature
        handled.append(time.monotonic())
        loop.quit()

    previous = signal.signal(signal.SIGUSR1, on_signal)
    timer = let_signal_handlers_run(qapp)
    fallback = QTimer()
    fallback.setSingleShot(True)
    fallback.timeout.connect(loop.quit)
    fallback.start(20000)
    sent: list[float] = []

    def send() -> None:
        time.sleep(0.3)  # the loop is waiting by now
        sent.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGUSR1)

    threading.Thread(target=send, daemon=True).start()
    try:
        loop.exec()
    finally:
        timer.stop()
        fallback.stop()
        signal.signal(signal.SIGUSR1, previous)
    assert handled and sent and handled[0] - sent[0] < 10.0  # the wake-up is 0.25 s; 10 s allows a loaded machine
