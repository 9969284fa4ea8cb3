"""``radreview study read``: open the study database, sign the reader in, show the reading window."""

from __future__ import annotations

import sys
from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QDialog, QMessageBox, QWidget

from radreview.gui.app import let_signal_handlers_run
from radreview.gui.reading.sign_in import SignInDialog
from radreview.gui.reading.window import ReadingWindow
from radreview.readerstudy.db import DatabaseError, open_database
from radreview.readerstudy.design import StudyDesignError
from radreview.readerstudy.reading import ReadingError, sign_in_study_name


def study_name(db, requested: str | None) -> str:  # type: ignore[no-untyped-def]
    """The study to read: the one named, or the only one the reader may sign in to (on
    PostgreSQL a reader's role sees no study before sign-in)."""
    return sign_in_study_name(db, requested)


def open_reading_window(db_target: str, study: str | None = None, reader: str | None = None,
                        parent: QWidget | None = None,
                        on_signed_in: Callable[[], None] | None = None) -> ReadingWindow | None:
    """Open the study, sign the reader in and show the reading window (None if cancelled or the
    study cannot be opened; the reason is shown in a message box).

    ``on_signed_in`` runs once the reader is signed in, before the reading window exists: the
    viewer closes its images and AI there (blinding, docs/reader_study.md).
    """
    try:
        db = open_database(db_target, must_exist=True)
        name = study_name(db, study)
    except (DatabaseError, StudyDesignError, ReadingError) as exc:
        QMessageBox.critical(parent, "Reader study", str(exc))
        return None
    dialog = SignInDialog(db, name, reader, parent)
    if dialog.exec() != QDialog.DialogCode.Accepted or dialog.reader_session is None:
        db.close()
        return None
    if on_signed_in is not None:
        on_signed_in()
    window = ReadingWindow(dialog.reader_session)
    window.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    window.destroyed.connect(lambda *_: db.close())
    window.show()
    return window


def run_reading_app(db_target: str, study: str | None = None, reader: str | None = None) -> int:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("radreview reader study")
    let_signal_handlers_run(app)  # `kill` and logout end the session (every saved read is in the database)
    try:
        db = open_database(db_target, must_exist=True)
        name = study_name(db, study)
    except (DatabaseError, StudyDesignError, ReadingError) as exc:
        # Started from a terminal: say it there (a message box would wait for a click).
        print(f"radreview study read: {exc}", file=sys.stderr)
        return 2
    dialog = SignInDialog(db, name, reader)
    if dialog.exec() != QDialog.DialogCode.Accepted or dialog.reader_session is None:
        db.close()
        return 1
    window = ReadingWindow(dialog.reader_session)
    window.show()
    try:
        return app.exec()
    finally:
        db.close()
