"""The reading window: the assigned case, the decision form, and the AI when the design says.

One case at a time, in the reader's randomised order, resuming where the reader stopped. No
patient identifiers are shown (the caption holds the pseudonymous case code only). In sequential
mode the first read is locked before the AI panel appears; the aided read then asks for an
explicit agree/disagree. Keys: P present, N absent, 1-5 rating, A agree, D disagree,
H heatmap on/off, PgUp/PgDn other images of the case, Enter save/lock.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QDockWidget,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from radreview import RESEARCH_USE_NOTICE
from radreview.gui.image_view import ImageView
from radreview.gui.reading.telemetry import ReadTimer
from radreview.readerstudy.reading import CaseView, ReaderSession, ReadingError, WashoutPending
from radreview.studies import StudyLoadError, decode_image, index_paths

log = logging.getLogger(__name__)


class ReadingImageView(ImageView):
    """The viewer's image pane with the caption reduced to the case code (no file names)."""

    case_caption = ""

    def _update_caption(self) -> None:
        super()._update_caption()
        self._caption.setText(self.case_caption)
        self._place_labels()


def _heatmap_lut() -> np.ndarray:
    """Transparent at 0, through yellow to red, alpha rising with the value."""
    values = np.linspace(0.0, 1.0, 256)
    lut = np.empty((256, 4), np.uint8)
    lut[:, 0] = 255
    lut[:, 1] = np.clip(255 * (1.0 - values) * 1.6, 0, 255).astype(np.uint8)
    lut[:, 2] = 0
    lut[:, 3] = np.clip(values * 3.0, 0, 1) * 255
    return lut


class ReadingWindow(QMainWindow):
    """Reads the signed-in reader's cases. Emits ``saved(read_id)`` after every committed save."""

    saved = Signal(int)
    finished = Signal()

    def __init__(self, reader: ReaderSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.reader = reader
        self.case: CaseView | None = None
        self.timer = ReadTimer()
        self._token = ""
        self._image_index = 0
        self._images: list[str] = []
        self._last_window: tuple[float, float] | None = None
        self._last_zoom: float | None = None
        scale = reader.study.confidence_scale
        self.uses_confidence = scale in ("0-100", "both")
        self.uses_rating = scale in ("5-point", "both")
        self.setWindowTitle(f"{reader.study.name}: reader {reader.reader_code}")

        self.view = ReadingImageView()
        self.view.display_changed.connect(self._on_display_changed)
        self.setCentralWidget(self.view)
        self.heatmap = pg.ImageItem(axisOrder="row-major")
        self.heatmap.setLookupTable(_heatmap_lut())
        self.heatmap.setOpacity(0.45)
        self.heatmap.setVisible(False)
        self.view.add_overlay(self.heatmap)
        self._build_panel()
        self._build_shortcuts()
        self.resize(1200, 800)
        self.load_current()

    # ----- layout ------------------------------------------------------------------------------
    def _build_panel(self) -> None:
        panel = QWidget()
        layout = QVBoxLayout(panel)
        self.case_label = QLabel()
        self.case_label.setObjectName("case_label")
        self.progress = QProgressBar()
        self.phase_label = QLabel()
        self.phase_label.setWordWrap(True)
        question = QLabel(f"<b>{self.reader.study.question}</b>")
        question.setWordWrap(True)
        layout.addWidget(self.case_label)
        layout.addWidget(self.progress)
        layout.addWidget(question)
        layout.addWidget(self.phase_label)

        decision_row = QHBoxLayout()
        self.present_button = QPushButton("Present (P)")
        self.absent_button = QPushButton("Absent (N)")
        self.decision_group = QButtonGroup(self)
        for value, button in ((1, self.present_button), (0, self.absent_button)):
            button.setCheckable(True)
            self.decision_group.addButton(button, value)
            decision_row.addWidget(button)
        self.decision_group.idClicked.connect(self._on_decision)
        layout.addLayout(decision_row)

        form = QFormLayout()
        self.confidence_slider = QSlider(Qt.Orientation.Horizontal)
        self.confidence_slider.setRange(0, 100)
        self.confidence_spin = QSpinBox()
        self.confidence_spin.setRange(0, 100)
        self.confidence_spin.setSuffix(" %")
        self.confidence_slider.valueChanged.connect(self.confidence_spin.setValue)
        self.confidence_spin.valueChanged.connect(self.confidence_slider.setValue)
        self.confidence_spin.valueChanged.connect(self._on_confidence)
        confidence_row = QHBoxLayout()
        confidence_row.addWidget(self.confidence_slider)
        confidence_row.addWidget(self.confidence_spin)
        if self.uses_confidence:
            form.addRow("Probability present", confidence_row)
        else:
            self.confidence_slider.hide()
            self.confidence_spin.hide()
        self.rating_group = QButtonGroup(self)
        rating_row = QHBoxLayout()
        labels = {1: "definitely absent", 2: "probably absent", 3: "uncertain", 4: "probably present",
                  5: "definitely present"}
        for value in range(1, 6):
            button = QPushButton(str(value))
            button.setCheckable(True)
            button.setToolTip(labels[value])
            self.rating_group.addButton(button, value)
            rating_row.addWidget(button)
        self.rating_group.idClicked.connect(self._on_rating)
        if self.uses_rating:
            form.addRow("Rating (1-5)", rating_row)
        else:
            for button in self.rating_group.buttons():
                button.hide()
        self.comment = QLineEdit()
        self.comment.setPlaceholderText("optional comment")
        form.addRow("Comment", self.comment)
        layout.addLayout(form)

        self.ai_box = QGroupBox("AI")
        ai_layout = QVBoxLayout(self.ai_box)
        self.ai_label = QLabel()
        self.ai_label.setObjectName("ai_label")
        self.ai_label.setWordWrap(True)
        ai_layout.addWidget(self.ai_label)
        heat_row = QHBoxLayout()
        self.heatmap_check = QCheckBox("Heatmap (H)")
        self.heatmap_check.toggled.connect(self._on_heatmap_toggled)
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(45)
        self.opacity_slider.valueChanged.connect(self._on_opacity)
        heat_row.addWidget(self.heatmap_check)
        heat_row.addWidget(self.opacity_slider)
        ai_layout.addLayout(heat_row)
        agree_row = QHBoxLayout()
        self.agree_button = QPushButton("Agree with AI (A)")
        self.disagree_button = QPushButton("Disagree (D)")
        self.agreement_group = QButtonGroup(self)
        for value, button in ((1, self.agree_button), (0, self.disagree_button)):
            button.setCheckable(True)
            self.agreement_group.addButton(button, value)
            agree_row.addWidget(button)
        self.agreement_group.idClicked.connect(lambda v: self.timer.record("agreement", agree=bool(v)))
        ai_layout.addLayout(agree_row)
        layout.addWidget(self.ai_box)

        image_row = QHBoxLayout()
        self.previous_image = QPushButton("◀ image")
        self.next_image = QPushButton("image ▶")
        self.image_label = QLabel()
        self.previous_image.clicked.connect(lambda: self.show_image(self._image_index - 1))
        self.next_image.clicked.connect(lambda: self.show_image(self._image_index + 1))
        image_row.addWidget(self.previous_image)
        image_row.addWidget(self.image_label)
        image_row.addWidget(self.next_image)
        layout.addLayout(image_row)

        self.save_button = QPushButton("Save")
        self.save_button.setDefault(True)
        self.save_button.clicked.connect(self.save)
        layout.addWidget(self.save_button)
        self.message = QLabel()
        self.message.setObjectName("message")
        self.message.setWordWrap(True)
        layout.addWidget(self.message)
        layout.addStretch(1)
        notice = QLabel(f"<small>{RESEARCH_USE_NOTICE}</small>")
        notice.setWordWrap(True)
        layout.addWidget(notice)
        dock = QDockWidget("Read", self)
        dock.setObjectName("reading_dock")
        dock.setFeatures(QDockWidget.DockWidgetFeature.NoDockWidgetFeatures)
        dock.setWidget(panel)
        dock.setMinimumWidth(320)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)

    def _build_shortcuts(self) -> None:
        """Single keys, handled when no text field has the focus (a comment keeps its letters)."""
        self._keys = {
            Qt.Key.Key_P: lambda: self.set_decision(1), Qt.Key.Key_N: lambda: self.set_decision(0),
            Qt.Key.Key_A: lambda: self.set_agreement("agree"),
            Qt.Key.Key_D: lambda: self.set_agreement("disagree"),
            Qt.Key.Key_H: lambda: self.heatmap_check.toggle() if self.heatmap_check.isEnabled() else None,
            Qt.Key.Key_Return: self.save, Qt.Key.Key_Enter: self.save,
            Qt.Key.Key_PageUp: lambda: self.show_image(self._image_index - 1),
            Qt.Key.Key_PageDown: lambda: self.show_image(self._image_index + 1),
        }
        for value, key in enumerate((Qt.Key.Key_1, Qt.Key.Key_2, Qt.Key.Key_3, Qt.Key.Key_4, Qt.Key.Key_5), 1):
            self._keys[key] = lambda v=value: self.set_rating(v)
        # The image view would otherwise swallow keys it does not use.
        self.view.installEventFilter(self)

    def handle_key(self, key: int, modifiers: Qt.KeyboardModifier = Qt.KeyboardModifier.NoModifier) -> bool:
        if modifiers & (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier):
            return False
        action = self._keys.get(Qt.Key(key))
        if action is None:
            return False
        action()
        return True

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt naming
        if not self.handle_key(event.key(), event.modifiers()):
            super().keyPressEvent(event)

    def eventFilter(self, watched, event) -> bool:  # noqa: N802
        if watched is self.view and event.type() == QEvent.Type.KeyPress:
            return self.handle_key(event.key(), event.modifiers())
        return super().eventFilter(watched, event)

    # ----- the case ----------------------------------------------------------------------------
    def load_current(self) -> None:
        """Show the reader's current case and phase (or the end / washout message)."""
        previous = self.case
        try:
            self.case = self.reader.current()
        except WashoutPending as exc:
            self.case = None
            self._show_closed(str(exc))
            return
        progress = self.reader.progress()
        self.progress.setRange(0, max(1, progress.total))
        self.progress.setValue(progress.done)
        if self.case is None:
            self._show_closed("All your cases are read. Thank you.")
            self.finished.emit()
            return
        case = self.case
        self._token = uuid.uuid4().hex  # one token per form: a repeated click cannot duplicate
        self.timer.restart()
        self.case_label.setText(f"<b>Case {case.case_code}</b> — {case.position} of {case.total}"
                                + (f", session {case.session_number}" if case.session_number > 1 else ""))
        aided = case.phase == "aided"
        sequential = self.reader.study.mode == "sequential"
        if aided and sequential:
            unaided = case.unaided_read
            own = "present" if unaided and unaided.decision else "absent"
            self.phase_label.setText(f"Your locked first read: <b>{own}</b>. Now with the AI: "
                                     "record your final read and whether you agree with the AI.")
            self.save_button.setText("Save final read (Enter)")
        elif sequential:
            self.phase_label.setText("First read, without the AI. Locking it shows the AI.")
            self.save_button.setText("Lock read, show AI (Enter)")
        else:
            self.phase_label.setText("Read with the AI." if aided else "Read without the AI.")
            self.save_button.setText("Save and next (Enter)")
        self._reset_form(keep=aided and sequential and previous is not None
                         and previous.assignment_id == case.assignment_id)
        self._show_ai(case)
        for widget in (self.present_button, self.absent_button, self.save_button, self.comment):
            widget.setEnabled(True)
        if previous is None or previous.assignment_id != case.assignment_id:
            self._images = list(case.image_paths)
            self.show_image(0)
        self.message.setText("")

    def _show_closed(self, text: str) -> None:
        self.case_label.setText("")
        self.phase_label.setText(text)
        self.ai_box.hide()
        for widget in (self.present_button, self.absent_button, self.save_button, self.comment):
            widget.setEnabled(False)
        self.view.clear(text)

    def _reset_form(self, keep: bool) -> None:
        """A fresh form; for the aided read of the same case, start from the locked values."""
        for group in (self.decision_group, self.rating_group, self.agreement_group):
            group.setExclusive(False)
            for button in group.buttons():
                button.setChecked(False)
            group.setExclusive(True)
        unaided = self.case.unaided_read if (keep and self.case) else None
        self.confidence_spin.blockSignals(True)
        self.confidence_spin.setValue(int(round(unaided.confidence)) if unaided and unaided.confidence is not None else 50)
        self.confidence_slider.setValue(self.confidence_spin.value())
        self.confidence_spin.blockSignals(False)
        self._confidence_touched = False
        self.comment.clear()

    def _show_ai(self, case: CaseView) -> None:
        self.ai_box.setVisible(bool(case.ai))
        self.heatmap.setVisible(False)
        self.heatmap_check.blockSignals(True)
        self.heatmap_check.setChecked(False)
        self.heatmap_check.blockSignals(False)
        self._heatmap_array = None
        if not case.ai:
            return
        lines = [f"{ai.model}{' · ' + ai.label if ai.label else ''}: <b>{100 * ai.probability:.0f}%</b>"
                 for ai in case.ai]
        self.ai_label.setText("<br>".join(lines))
        path = case.ai[0].heatmap_path
        if path:
            try:
                array = np.load(path)
                if array.ndim == 2:
                    self._heatmap_array = np.clip(array.astype(np.float32), 0.0, 1.0)
            except (OSError, ValueError) as exc:
                log.warning("heatmap %s could not be read: %s", path, exc)
        self.heatmap_check.setEnabled(self._heatmap_array is not None)
        self.opacity_slider.setEnabled(self._heatmap_array is not None)
        self._place_heatmap()

    def show_image(self, index: int) -> None:
        if not self._images:
            return
        self._image_index = index % len(self._images)
        path = self._images[self._image_index]
        self.image_label.setText(f"{self._image_index + 1} / {len(self._images)}")
        self.previous_image.setEnabled(len(self._images) > 1)
        self.next_image.setEnabled(len(self._images) > 1)
        self.view.case_caption = self.case.case_code if self.case else ""
        try:
            index_ = index_paths([Path(path)])
            entries = index_.images()
            if not entries:
                raise StudyLoadError(index_.problems[0].reason if index_.problems else "no image found")
            self.view.set_image(entries[0], decode_image(entries[0]))
        except (StudyLoadError, OSError) as exc:
            # The reader can still read the other images and record a decision.
            self.view.clear(f"This image cannot be shown: {exc}")
            log.warning("case %s: image %d cannot be shown", self.case.case_code if self.case else "?",
                        self._image_index + 1)
        self._last_window = self._window_key()
        self._last_zoom = None
        self._place_heatmap()

    def _place_heatmap(self) -> None:
        if self._heatmap_array is None or self.view.decoded is None:
            self.heatmap.setVisible(False)
            return
        self.heatmap.setImage(self._heatmap_array, autoLevels=False, levels=(0.0, 1.0))
        rows, cols = self.view.decoded.pixels.shape[:2]
        self.heatmap.setRect(0, 0, cols, rows)
        self.heatmap.setVisible(self.heatmap_check.isChecked())

    # ----- input -------------------------------------------------------------------------------
    def set_decision(self, value: int) -> None:
        if self.case is None:
            return
        self.decision_group.button(value).setChecked(True)
        self._on_decision(value)

    def set_rating(self, value: int) -> None:
        if self.case is None or not self.uses_rating:
            return
        self.rating_group.button(value).setChecked(True)
        self._on_rating(value)

    def set_confidence(self, value: float) -> None:
        self.confidence_spin.setValue(int(round(value)))

    def set_agreement(self, value: str) -> None:
        if self.case is None or not self.case.ai:
            return
        self.agreement_group.button(1 if value == "agree" else 0).setChecked(True)
        self.timer.record("agreement", agree=value == "agree")

    def _on_decision(self, value: int) -> None:
        self.timer.decision_made()
        self.timer.record("decision", decision=value)

    def _on_rating(self, value: int) -> None:
        self.timer.decision_made()
        self.timer.record("rating", rating=value)

    def _on_confidence(self, value: int) -> None:
        self._confidence_touched = True
        self.timer.decision_made()
        self.timer.record("confidence", confidence=value)

    def _on_heatmap_toggled(self, on: bool) -> None:
        self.heatmap.setVisible(on and self._heatmap_array is not None)
        self.timer.record("heatmap", visible=on)

    def _on_opacity(self, value: int) -> None:
        self.heatmap.setOpacity(value / 100.0)
        self.timer.record("heatmap_opacity", opacity=value / 100.0)

    def _window_key(self) -> tuple[float, float] | None:
        window = self.view.window
        return (round(window.center, 2), round(window.width, 2)) if window is not None else None

    def _on_display_changed(self) -> None:
        if self.case is None or self.view.decoded is None:
            return
        key = self._window_key()
        if key != self._last_window and key is not None:
            self._last_window = key
            self.timer.record("window", center=key[0], width=key[1])
        zoom = round(self.view.zoom_percent(), 1)
        if self._last_zoom is not None and abs(zoom - self._last_zoom) > 0.5:
            self.timer.record("zoom", percent=zoom)
        self._last_zoom = zoom

    # ----- saving ------------------------------------------------------------------------------
    def save(self) -> None:
        """Save the read in one committed transaction, then move on (or show why not)."""
        case = self.case
        if case is None:
            return
        decision = self.decision_group.checkedId()
        if decision < 0:
            self.message.setText("Choose present (P) or absent (N).")
            return
        rating = self.rating_group.checkedId()
        if self.uses_rating and rating < 0:
            self.message.setText("Choose a rating from 1 to 5.")
            return
        agreement = None
        if case.ai:
            checked = self.agreement_group.checkedId()
            if checked < 0:
                self.message.setText("Say whether you agree with the AI (A) or not (D).")
                return
            agreement = "agree" if checked == 1 else "disagree"
        try:
            read = self.reader.save_read(
                case.assignment_id, case.phase, decision,
                confidence=float(self.confidence_spin.value()) if self.uses_confidence else None,
                rating=rating if self.uses_rating else None,
                comment=self.comment.text().strip(), ai_agreement=agreement,
                time_to_first_decision_ms=self.timer.first_decision_ms,
                total_time_ms=self.timer.elapsed_ms(), telemetry=self.timer.events,
                client_token=self._token,
            )
        except ReadingError as exc:
            self.message.setText(f"Not saved: {exc}")
            return
        except Exception as exc:  # the database went away: keep the form so nothing typed is lost
            log.exception("saving a read failed")
            self.message.setText(f"Not saved (database problem): {exc}. Try again.")
            return
        self.saved.emit(read.id)
        self.load_current()
