"""Run plain functions in worker threads and hear back on the GUI thread.

Long work in radreview is a plain function that takes ``progress(done, total)`` and
``cancel() -> bool`` (see DESIGN.md). :class:`TaskRunner` runs such a function on a
``QThreadPool`` and delivers its progress, result or exception through Qt signals, which are
queued to the GUI thread; the function itself never touches a widget.

    runner = TaskRunner(parent=self)
    task = runner.start(lambda progress, cancel: index_paths(paths, progress, cancel),
                        on_done=self._show_index, on_error=self._show_error,
                        on_progress=self._progress)
    task.cancel()   # the user moved on: the function sees cancel() -> True; callbacks stay silent
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QThreadPool, QTimer, Signal

log = logging.getLogger(__name__)

TaskFunction = Callable[[Callable[[int, int], None], Callable[[], bool]], Any]


class _TaskSignals(QObject):
    progress = Signal(int, int)
    done = Signal(object)
    failed = Signal(object)


class Task:
    """One call of a function in the pool. Cancelling silences its callbacks.

    Not a QRunnable subclass: the pool is given the bound ``run`` (Qt wraps it in a runnable it
    deletes itself), because PySide keeps every Python QRunnable that a pool ever started
    alive, and a viewer starts thousands.
    """

    def __init__(self, function: TaskFunction, name: str = "") -> None:
        self.function = function
        self.name = name or getattr(function, "__name__", "task")
        self.signals = _TaskSignals()
        self._cancelled = threading.Event()
        self.finished = threading.Event()
        self.dropped = False  # the runner has let go of it (GUI thread only)

    def cancel(self) -> None:
        self._cancelled.set()

    def is_cancelled(self) -> bool:
        return self._cancelled.is_set()

    def _progress(self, done: int, total: int) -> None:
        if not self.is_cancelled():
            self.signals.progress.emit(int(done), int(total))

    def run(self) -> None:  # runs in the worker thread
        try:
            if self.is_cancelled():
                return
            result = self.function(self._progress, self.is_cancelled)
        except BaseException as exc:  # noqa: BLE001 - every failure goes back as a signal
            if not self.is_cancelled():
                log.debug("task %s failed", self.name, exc_info=True)
                self.signals.failed.emit(exc)
        else:
            if not self.is_cancelled():
                self.signals.done.emit(result)
        finally:
            self.finished.set()


class TaskRunner(QObject):
    """Starts :class:`Task` objects on its own thread pool and keeps them alive until done."""

    def __init__(self, parent: QObject | None = None, max_threads: int | None = None) -> None:
        super().__init__(parent)
        self.pool = QThreadPool(self)
        # Keep idle threads instead of letting them expire: new threads would each get a fresh
        # malloc arena on glibc, and browsing hundreds of images would grow memory for nothing.
        self.pool.setExpiryTimeout(-1)
        if max_threads:
            self.pool.setMaxThreadCount(max_threads)
        self._tasks: set[Task] = set()
        self._shut_down = False

    def start(
        self,
        function: TaskFunction,
        on_done: Callable[[Any], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        on_progress: Callable[[int, int], None] | None = None,
        name: str = "",
        priority: int = 0,
    ) -> Task:
        task = Task(function, name)
        signals = task.signals

        def unless_cancelled(callback):
            # A result may already be queued when the task is cancelled (the user moved on,
            # the window closed): it is dropped here, on the GUI thread, at delivery.
            return lambda *args: None if task.is_cancelled() else callback(*args)

        # Connected to the signals object, which lives on the GUI thread: queued delivery.
        if on_progress is not None:
            signals.progress.connect(unless_cancelled(on_progress))
        if on_done is not None:
            signals.done.connect(unless_cancelled(on_done))
        if on_error is not None:
            signals.failed.connect(unless_cancelled(on_error))
        else:
            signals.failed.connect(lambda exc, n=task.name: log.error("%s failed: %s", n, exc))
        signals.done.connect(lambda _r, t=task: self._release(t))
        signals.failed.connect(lambda _e, t=task: self._release(t))
        if self._shut_down:  # e.g. a timer that fired after the window closed: run nothing
            task.cancel()
            return task
        self._tasks.add(task)
        self.pool.start(task.run, priority)
        self._forget_finished()
        return task

    def _release(self, task: Task) -> None:
        """Drop the runner's reference once the worker has left ``run()``, so that the task and
        its signals object are freed on the GUI thread, not in the worker (Qt objects must not
        be deleted from another thread)."""
        delay_ms = 20
        if task.finished.is_set():
            QTimer.singleShot(delay_ms, lambda: self._drop(task))
        else:
            QTimer.singleShot(delay_ms, lambda: self._release(task))

    def _drop(self, task: Task) -> None:
        self._tasks.discard(task)
        if task.dropped:  # e.g. shutdown() got there before the delayed release
            return
        task.dropped = True
        # The callbacks connected to the task's signals refer back to the task: a cycle that
        # passes through Qt, invisible to Python's garbage collector. Deleting the signals
        # object cuts the connections, so the task and its callbacks can be freed.
        task.signals.deleteLater()

    def _forget_finished(self) -> None:
        # Cancelled tasks emit nothing, so they are dropped here once their thread is done.
        done = {t for t in self._tasks if t.finished.is_set() and t.is_cancelled()}
        for task in done:
            self._drop(task)

    def cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    def active_count(self) -> int:
        return self.pool.activeThreadCount()

    def shutdown(self, timeout_ms: int = 3000) -> bool:
        """Cancel everything and wait for running functions to return (on close).
        Tasks started afterwards are cancelled at once."""
        self._shut_down = True
        self.cancel_all()
        self.pool.clear()
        finished = self.pool.waitForDone(timeout_ms)
        for task in list(self._tasks):
            self._drop(task)
        return finished
