"""Start the viewer: the QApplication, the main window, and the debug options of ``radreview view``."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from radreview import RESEARCH_USE_NOTICE

log = logging.getLogger(__name__)


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """On glibc, cap the number of malloc arenas (like MALLOC_ARENA_MAX=2).

    Decoding in worker threads otherwise gives each thread its own arena, and freed image
    buffers stay mapped in them: resident memory climbs while browsing although nothing leaks
    (measured by tests/benchmarks/bench_viewer.py). Returns True if the setting was applied.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_arena_max = -8  # from glibc's malloc.h
        return bool(libc.mallopt(m_arena_max, arenas))
    except (OSError, AttributeError):
        return False


def application() -> QApplication:
    """The QApplication (created once, with radreview's names for settings and the window manager)."""
    app = QApplication.instance()
    if app is None:
        limit_malloc_arenas()
        app = QApplication(sys.argv[:1])
        app.setApplicationName("radreview")
        app.setOrganizationName("radreview")
        app.setStyle("Fusion")
    # Anti-aliased rulers; images are shown pixel-exact (no smoothing of the radiograph).
    pg.setConfigOptions(antialias=True)
    return app  # type: ignore[return-value]


SIGNAL_WAKE_MS = 250


def let_signal_handlers_run(app: QApplication, interval_ms: int = SIGNAL_WAKE_MS) -> QTimer:
    """Wake the event loop every ``interval_ms`` so that Python's signal handlers run.

    CPython runs a handler (SIGTERM and SIGHUP: radreview.studies.archives; SIGINT) only between
    bytecodes; while Qt's loop waits for events no Python code runs, so ``kill`` would not end an
    idle window (a reader's session survived logout).
    """
    timer = QTimer(app)
    timer.timeout.connect(lambda: None)
    timer.start(interval_ms)
    return timer


def run_viewer(
    paths: Sequence[str | Path] = (),
    screenshot: str | Path | None = None,
    smoke_test: bool = False,
    geometry: tuple[int, int] | None = None,
) -> int:
    """Open the main window (on ``paths`` if given) and run the event loop.

    ``screenshot``: once everything has loaded, save the window as PNG and quit.
    ``smoke_test``: open, let the event loop settle, close; exit status 0 if all went well.
    """
    from radreview.gui.main_window import MainWindow

    app = application()
    let_signal_handlers_run(app)
    window = MainWindow(save_on_close=not (screenshot or smoke_test))
    if geometry:
        window.resize(*geometry)
    window.show()
    log.info("radreview viewer. %s", RESEARCH_USE_NOTICE)
    if paths:
        window.open_paths(list(paths))

    if screenshot or smoke_test:
        started = time.monotonic()

        def finish_when_idle() -> None:
            settled = not window.is_busy() and (not paths or window.current is not None or window.problems_panel.problems)
            if not settled and time.monotonic() - started < 60:
                QTimer.singleShot(200, finish_when_idle)
                return
            if screenshot:
                app.processEvents()
                window.grab().save(str(screenshot), "PNG")
                log.info("screenshot saved to %s", screenshot)
            window.close()

        QTimer.singleShot(300, finish_when_idle)
    return app.exec()
