"""The worker helper: results, errors, progress and cancellation arrive on the GUI thread."""

from __future__ import annotations

import threading
import time

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QThread  # noqa: E402

from radreview.gui.workers import TaskRunner  # noqa: E402

pytestmark = pytest.mark.gui


def count_to(n: int, progress, cancel) -> int:
    done = 0
    for done in range(1, n + 1):
        if cancel():
            break
        progress(done, n)
        time.sleep(0.001)
    return done


def test_result_and_progress_arrive_on_the_gui_thread(qtbot) -> None:
    runner = TaskRunner()
    seen: dict[str, object] = {"progress": []}
    gui_thread = QThread.currentThread()

    def on_done(result):
        seen["result"] = result
        seen["thread"] = QThread.currentThread()

    runner.start(lambda p, c: count_to(20, p, c), on_done=on_done, on_progress=lambda d, t: seen["progress"].append((d, t)))
    qtbot.waitUntil(lambda: "result" in seen, timeout=5000)
    assert seen["result"] == 20
    assert seen["thread"] is gui_thread
    qtbot.waitUntil(lambda: len(seen["progress"]) == 20, timeout=2000)
    assert seen["progress"][-1] == (20, 20)
    # The runner lets go of the finished task (on the GUI thread, after the worker left run()).
    qtbot.waitUntil(lambda: not runner._tasks, timeout=2000)
    runner.shutdown()


def test_exception_becomes_a_signal_not_a_crash(qtbot) -> None:
    runner = TaskRunner()
    errors: list[BaseException] = []

    def broken(_p, _c):
        raise ValueError("bad input: file.dcm")

    runner.start(broken, on_error=errors.append)
    qtbot.waitUntil(lambda: bool(errors), timeout=5000)
    assert isinstance(errors[0], ValueError) and "file.dcm" in str(errors[0])
    runner.shutdown()


def test_cancel_stops_the_function_and_silences_callbacks(qtbot) -> None:
    runner = TaskRunner()
    started = threading.Event()
    saw_cancel = threading.Event()
    results: list[object] = []

    def long_work(_p, cancel):
        started.set()
        while not cancel():
            time.sleep(0.005)
        saw_cancel.set()
        return "finished anyway"

    task = runner.start(long_work, on_done=results.append)
    assert started.wait(5)
    task.cancel()
    assert saw_cancel.wait(5)
    qtbot.wait(100)
    assert results == []
    assert runner.shutdown()


def test_nothing_runs_after_shutdown(qtbot) -> None:
    runner = TaskRunner()
    assert runner.shutdown()
    ran = threading.Event()
    task = runner.start(lambda _p, _c: ran.set())
    qtbot.wait(50)
    assert task.is_cancelled() and not ran.is_set()


def test_finished_tasks_are_freed(qtbot) -> None:
    """A viewer runs thousands of tasks: none may stay alive once delivered."""
    import gc

    from PySide6.QtCore import QCoreApplication, QEvent

    from radreview.gui.workers import Task

    def live_tasks() -> int:
        gc.collect()
        # type() rather than isinstance(): isinstance reads __class__, which trips deprecation
        # warnings on lazy module proxies (torch.distributed.reduce_op) left by other tests.
        return sum(type(o) is Task for o in gc.get_objects())

    runner = TaskRunner()
    before = live_tasks()
    results: list[int] = []
    for n in range(50):
        runner.start(lambda _p, _c, n=n: n, on_done=results.append)
    qtbot.waitUntil(lambda: len(results) == 50 and not runner._tasks, timeout=5000)
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    assert sorted(results) == list(range(50))
    assert live_tasks() <= before  # (earlier tests may have left some to free, never more)
    runner.shutdown()
