"""The reader sign-in dialog: reader id and PIN, checked by the data layer."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from radreview import RESEARCH_USE_NOTICE
from radreview.readerstudy.db import Database
from radreview.readerstudy.reading import AuthenticationError, ReaderSession, sign_in


class SignInDialog(QDialog):
    """Accepted only with a valid reader id and PIN; :attr:`reader_session` is then set."""

    def __init__(self, db: Database, study_name: str, reader: str | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Reader study {study_name}: sign in")
        self.db, self.study_name = db, study_name
        self.reader_session: ReaderSession | None = None
        self.reader_edit = QLineEdit(reader or "")
        self.reader_edit.setObjectName("reader")
        self.pin_edit = QLineEdit()
        self.pin_edit.setObjectName("pin")
        self.pin_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.error = QLabel("")
        self.error.setStyleSheet("color: #d04040;")
        form = QFormLayout()
        form.addRow("Reader id", self.reader_edit)
        form.addRow("PIN", self.pin_edit)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Sign in")
        buttons.accepted.connect(self.try_sign_in)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(f"<b>{study_name}</b>"))
        layout.addLayout(form)
        layout.addWidget(self.error)
        layout.addWidget(QLabel(f"<small>{RESEARCH_USE_NOTICE}</small>"))
        layout.addWidget(buttons)
        (self.pin_edit if reader else self.reader_edit).setFocus()

    def try_sign_in(self) -> None:
        try:
            self.reader_session = sign_in(self.db, self.study_name, self.reader_edit.text().strip(),
                                          self.pin_edit.text())
        except AuthenticationError as exc:
            self.error.setText(str(exc))
            self.pin_edit.clear()
            return
        self.accept()
