"""The reading window: the assigned case, the decision form, and the AI when the design says.

One case at a time, in the reader's randomised order, resuming where the reader stopped. No
patient identifiers are shown (the caption holds the pseudonymous case code only). In sequential
mode the first read is locked before the AI panel appears; the aided read then asks for an
explicit agree/disagree (not where the AI calls the case outside its scope: it shows no answer
there). Keys: P present, N absent, 1-5 rating, A agree, D disagree, H heatmap on/off, PgUp/PgDn
other images of the case, Enter save/lock.

The AI reads as it does in the viewer: each image's stored engine result goes through
:func:`radreview.inference.presentation.present_image` (tiers in words, cut-offs, scope verdict,
one-line verdict) and its heatmap through the viewer's own overlay code
(:mod:`radreview.gui.heatmap_overlay`), with the viewer's default colour map, threshold, scale
and span for every reader alike (the reader may change only the opacity and switch the heatmap
on or off); an image outside the model's scope shows "Outside this model's scope — no findings
shown", no tier and no heatmap. What was on screen is recorded in the read's telemetry
(``ai_shown``, ``heatmap``: see :mod:`radreview.readerstudy.heatmap_use`).

Confidence has no default: the reader sets it (or the read is refused), except in the aided read of
the sequential mode, which starts from the reader's own locked unaided read, also after a resume.
Closing the window while a case is on screen asks first.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import html

import numpy as np
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
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from radreview import RESEARCH_USE_NOTICE
from radreview.gui.ai_settings import AiSettings
from radreview.gui.heatmap_overlay import ColorBar, HeatmapOverlay, heatmap_layer
from radreview.gui.image_view import ImageView
from radreview.gui.reading.telemetry import ReadTimer
from radreview.inference.engine import ImageResult, LabelResult
from radreview.inference.presentation import (
    NO_HEATMAP,
    OUT_OF_SCOPE_MESSAGE,
    HeatmapLegend,
    ImagePresentation,
    format_probability,
    present_heatmap,
    present_image,
)
from radreview.inference.serialize import ResultFormatError, image_from_dict
from radreview.readerstudy.reading import AIView, CaseView, ReaderSession, ReadingError, WashoutPending
from radreview.studies import StudyLoadError, decode_image, index_paths

log = logging.getLogger(__name__)


class ReadingImageView(ImageView):
    """The viewer's image pane with the caption reduced to the case code (no file names)."""

    case_caption = ""

    def _update_caption(self) -> None:
        super()._update_caption()
        self._caption.setText(self.case_caption)
        self._place_labels()


TIER_COLOURS = {"likely": "#d9534f", "possible": "#f0ad4e", "below": "#5cb85c"}
NO_CONFIDENCE = -1  # the confidence box's "not set" value


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
        self._confidence_set = False
        self._leave_confirmed = False
        self.close_dialog: QMessageBox | None = None
        # The viewer's defaults, the same for every reader (not this workstation's saved settings).
        self.display = AiSettings()
        self._ai_results: list[tuple[AIView, list[ImageResult | None], str]] = []  # per model: results, problem
        self._heatmap_label: LabelResult | None = None
        self._heatmap_legend: HeatmapLegend = NO_HEATMAP  # how the map on screen is drawn
        self._heatmap_visible = False
        self._ai_revealed = False
        self._asks_agreement = False
        scale = reader.study.confidence_scale
        self.uses_confidence = scale in ("0-100", "both")
        self.uses_rating = scale in ("5-point", "both")
        self.setWindowTitle(f"{reader.study.name}: reader {reader.reader_code}")

        self.view = ReadingImageView()
        self.view.display_changed.connect(self._on_display_changed)
        self.setCentralWidget(self.view)
        self.overlay = HeatmapOverlay(self.display.colormap, self.display.opacity)
        self.overlay.set_enabled(False)
        self.overlay.attach(self.view)
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
        self.confidence_slider.setToolTip("Your probability that the finding is present; it has no default")
        self.confidence_spin = QSpinBox()
        # -1 is "not set": a read must not record a value the reader never chose.
        self.confidence_spin.setRange(NO_CONFIDENCE, 100)
        self.confidence_spin.setSpecialValueText("not set")
        self.confidence_spin.setSuffix(" %")
        self.confidence_slider.valueChanged.connect(self._on_slider)
        self.confidence_slider.sliderPressed.connect(lambda: self._on_slider(self.confidence_slider.value()))
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
        self.ai_label.setTextFormat(Qt.TextFormat.RichText)
        ai_layout.addWidget(self.ai_label)
        heat_row = QHBoxLayout()
        self.heatmap_check = QCheckBox("Heatmap (H)")
        self.heatmap_check.setChecked(self.display.show_heatmap)
        self.heatmap_check.toggled.connect(self._on_heatmap_toggled)
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(round(self.display.opacity * 100))
        self.opacity_slider.setToolTip("Heatmap opacity")
        self.opacity_slider.valueChanged.connect(self._on_opacity)
        heat_row.addWidget(self.heatmap_check)
        heat_row.addWidget(self.opacity_slider)
        ai_layout.addLayout(heat_row)
        self.heatmap_note = QLabel()
        self.heatmap_note.setObjectName("heatmap_note")
        self.heatmap_note.setWordWrap(True)
        self.heatmap_note.setStyleSheet("color: #888;")
        ai_layout.addWidget(self.heatmap_note)
        self.color_bar = ColorBar(self.ai_box)
        ai_layout.addWidget(self.color_bar)
        agree_row = QHBoxLayout()
        self.agree_button = QPushButton("Agree with AI (A)")
        self.disagree_button = QPushButton("Disagree (D)")
        self.agreement_group = QButtonGroup(self)
        for value, button in ((1, self.agree_button), (0, self.disagree_button)):
            button.setCheckable(True)
            self.agreement_group.addButton(button, value)
            agree_row.addWidget(button)
        self.agreement_group.idClicked.connect(lambda v: self.timer.record("agreement", agree=bool(v)))
        self.agree_widget = QWidget()
        self.agree_widget.setLayout(agree_row)
        agree_row.setContentsMargins(0, 0, 0, 0)
        ai_layout.addWidget(self.agree_widget)
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
            Qt.Key.Key_H: lambda: self.heatmap_check.toggle() if self.heatmap_check.isEnabled()
            and self.ai_box.isVisible() else None,
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
        self._clear_ai()  # nothing of the last case's AI may outlive it, not even for a frame
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
            confidence = (f", {unaided.confidence:g}%" if unaided is not None and unaided.confidence is not None
                          else "")
            self.phase_label.setText(f"Your locked first read: <b>{own}{confidence}</b>. Now with the AI: "
                                     "record your final read" + (" and whether you agree with the AI."
                                                                 if self._shows_findings(case) else "."))
            self.save_button.setText("Save final read (Enter)")
        elif sequential:
            self.phase_label.setText("First read, without the AI. Locking it shows the AI.")
            self.save_button.setText("Lock read, show AI (Enter)")
        else:
            self.phase_label.setText("Read with the AI." if aided else "Read without the AI.")
            self.save_button.setText("Save and next (Enter)")
        self._reset_form(case)
        for widget in (self.present_button, self.absent_button, self.save_button, self.comment):
            widget.setEnabled(True)
        if previous is None or previous.assignment_id != case.assignment_id:
            self._images = list(case.image_paths)
            self.show_image(0)
        self._show_ai(case)
        self.message.setText("")

    def _show_closed(self, text: str) -> None:
        self.case_label.setText("")
        self.phase_label.setText(text)
        self._clear_ai()
        for widget in (self.present_button, self.absent_button, self.save_button, self.comment):
            widget.setEnabled(False)
        self.view.clear(text)

    def _reset_form(self, case: CaseView) -> None:
        """A fresh form; the aided read of the sequential mode starts from the locked unaided read
        (decision, confidence and rating), also when the reader resumes there."""
        for group in (self.decision_group, self.rating_group, self.agreement_group):
            group.setExclusive(False)
            for button in group.buttons():
                button.setChecked(False)
            group.setExclusive(True)
        unaided = case.unaided_read if case.phase == "aided" else None
        if unaided is not None:
            self.decision_group.button(int(unaided.decision)).setChecked(True)
            if unaided.rating is not None and self.uses_rating:
                self.rating_group.button(int(unaided.rating)).setChecked(True)
        confidence = NO_CONFIDENCE
        if unaided is not None and unaided.confidence is not None:
            confidence = int(round(unaided.confidence))
        self._set_confidence_widgets(confidence)
        self._confidence_set = confidence != NO_CONFIDENCE
        self.comment.clear()

    def _set_confidence_widgets(self, value: int) -> None:
        for widget in (self.confidence_spin, self.confidence_slider):
            widget.blockSignals(True)
        self.confidence_spin.setValue(value)
        self.confidence_slider.setValue(max(0, value))
        for widget in (self.confidence_spin, self.confidence_slider):
            widget.blockSignals(False)

    # ----- the AI --------------------------------------------------------------------------------
    def _clear_ai(self) -> None:
        self.ai_box.hide()
        self._ai_revealed = False
        self._asks_agreement = False
        self.ai_label.setText("")
        self.heatmap_note.setText("")
        self.overlay.clear()
        self._ai_results = []
        self._heatmap_label = None
        self._heatmap_legend = NO_HEATMAP
        self._heatmap_visible = False

    @staticmethod
    def _shows_findings(case: CaseView) -> bool:
        return any(ai.shows_findings for ai in case.ai)

    def _show_ai(self, case: CaseView) -> None:
        """Reveal the AI (only a phase that shows it has any: the data layer gives none before)."""
        if not case.ai:
            return
        self._ai_results = []
        for ai in case.ai:
            results: list[ImageResult | None] = []
            problem = ""
            for index, raw in enumerate(ai.images):
                try:
                    results.append(image_from_dict(raw, f"AI result of image {index + 1}") if raw else None)
                except ResultFormatError as exc:
                    # A damaged stored result: say so and show nothing of it rather than half of it.
                    log.warning("case %s: %s", case.case_code, exc)
                    results.append(None)
                    problem = "the stored AI result of this case cannot be shown"
            self._ai_results.append((ai, results, problem))
        self._asks_agreement = self._shows_findings(case)
        self.agree_widget.setVisible(self._asks_agreement)
        self._ai_revealed = True
        self.ai_box.show()
        self._update_ai_for_image(reveal=True)

    def _update_ai_for_image(self, reveal: bool = False) -> None:
        """The AI of the image on screen: its presentation, its heatmap, and the telemetry of both."""
        if self.case is None or not self._ai_results:
            return
        index = self._image_index
        blocks, label_shown, note = [], None, ""
        legacy: np.ndarray | None = None
        in_scope: bool | None = None
        tier = ""
        for ai, results, problem in self._ai_results:
            result = results[index] if index < len(results) else None
            if result is None and ai.images:
                reason = problem or (ai.problems[index] if index < len(ai.problems) else "") or "no AI result"
                blocks.append(f"<b>{html.escape(ai.model)}</b>: {html.escape(reason)} for this image.")
                continue
            if result is None:  # a probability only, for the case
                in_scope = ai.in_scope if in_scope is None else in_scope
                blocks.append(self._probability_only(ai))
                legacy = legacy if legacy is not None else self._legacy_map(ai)
                note = note or "No heatmap: the study's AI outputs give probabilities only."
                continue
            presentation = present_image(result)
            blocks.append(self._presentation_html(ai, presentation))
            study = next((r for r in result.labels if r.model == ai.model and r.label == ai.label), None)
            finding = presentation.finding(study.key) if study is not None else None
            if study is not None and in_scope is None:
                in_scope, tier = study.in_scope, study.tier
            if label_shown is None and study is not None and finding is not None and finding.shown:
                label_shown = study
            elif finding is not None and not finding.shown:
                note = note or "No heatmap: the image is outside the model's scope."
        self.ai_label.setText("<br><br>".join(blocks))
        self._set_heatmap(label_shown, note, legacy)
        visible = self._effective_heatmap()
        if reveal:
            self.timer.record("ai_shown", in_scope=in_scope, tier=tier, heatmap_available=self.overlay.has_map,
                              heatmap_visible=visible, image=index + 1,
                              display={"colormap": self.display.colormap, "gate": self.display.gate,
                                       "scale": self.display.cam_scale, "span": self._heatmap_legend.span_logits,
                                       "span_source": self._heatmap_legend.span_source,
                                       "opacity": self.overlay.opacity()})
        elif visible != self._heatmap_visible:
            self.timer.record("heatmap", visible=visible, available=self.overlay.has_map, by="image", image=index + 1)
        self._heatmap_visible = visible

    @staticmethod
    def _probability_only(ai: AIView) -> str:
        name = f"{ai.model}{' · ' + ai.label if ai.label else ''}"
        if ai.in_scope is False:
            return f"<b>{html.escape(name)}</b>: {html.escape(OUT_OF_SCOPE_MESSAGE)}"
        tier = f" — {html.escape(ai.tier)}" if ai.tier else " (no tier: the AI file gives a probability only)"
        return f"<b>{html.escape(name)}</b>: {format_probability(ai.probability)}{tier}"

    @staticmethod
    def _presentation_html(ai: AIView, presentation: ImagePresentation) -> str:
        """The viewer's presentation in a few lines: verdict, findings with tier and cut-offs, region, scope."""
        model = html.escape(f"{ai.model} {next((f.version for f in presentation.findings), '')}".strip())
        if presentation.in_scope is False or (presentation.findings and not presentation.shown_findings):
            return (f"<b>{html.escape(OUT_OF_SCOPE_MESSAGE)}</b><br><small>{model}"
                    + (f" · {html.escape(presentation.scope_text)}" if presentation.scope_text
                       and presentation.scope_text != OUT_OF_SCOPE_MESSAGE else "") + "</small>")
        lines = [f"<b>{html.escape(presentation.verdict_text)}</b>"]
        for finding in presentation.shown_findings:
            colour = TIER_COLOURS.get(finding.tier, "#888888")
            lines.append(f"{html.escape(finding.display_name)}: <b>{html.escape(finding.probability_text)}</b> "
                         f"<span style='color:{colour}'>{html.escape(finding.tier_text)}</span><br>"
                         f"<small>cut-offs: {html.escape(finding.cutoffs_text)}</small>")
        if presentation.region_line:
            lines.append(f"<small>{html.escape(presentation.region_line)}</small>")
        details = [model] + ([html.escape(presentation.scope_text)] if presentation.scope_text else [])
        lines.append(f"<small>{' · '.join(details)}</small>")
        return "<br>".join(lines)

    def _legacy_map(self, ai: AIView) -> np.ndarray | None:
        """An AI file's own ``heatmap`` column: a .npy of 0..1 intensities over the image (no scale,
        no gate: shown as given). Only for probability-only outputs, outside the scope never."""
        if not ai.heatmap_path or not ai.shows_findings:
            return None
        try:
            array = np.load(ai.heatmap_path)
        except (OSError, ValueError) as exc:
            log.warning("heatmap %s could not be read: %s", ai.heatmap_path, exc)
            return None
        if array.ndim != 2 or not np.all(np.isfinite(array)):
            log.warning("heatmap %s is not a finite 2-D array", ai.heatmap_path)
            return None
        return np.clip(array.astype(np.float32), 0.0, 1.0)

    def _set_heatmap(self, label: LabelResult | None, note: str, legacy: np.ndarray | None = None) -> None:
        """The study label's map over the image shown, with the viewer's overlay code, or why none."""
        self._heatmap_label = None
        self._heatmap_legend = NO_HEATMAP
        self.overlay.clear()
        decoded = self.view.decoded
        if label is None and legacy is not None and decoded is not None:
            rows, cols = decoded.pixels.shape[:2]
            self.overlay.set_map(legacy, rows, cols)
            self.heatmap_note.setText("Heatmap from the AI file (0..1 as given)")
        elif label is None or label.cam is None or label.geometry is None:
            self.heatmap_note.setText(note or ("No heatmap: the AI gives none for this image." if label else ""))
        elif decoded is None or tuple(decoded.pixels.shape[:2]) != (label.geometry.rows, label.geometry.cols):
            # A map computed on an image of another size does not belong to this one.
            self.heatmap_note.setText("No heatmap: the AI ran on an image of another size than the one shown.")
        else:
            # the legend the viewer's AI panel draws with (AiPanel.heatmap_legend): the card's span
            # unless the reader set one, the same gate, the same colour bar
            legend = present_heatmap(label, self.display.cam_scale, self.display.gate, self.display.heatmap_span)
            intensity = heatmap_layer(label, legend)
            if float(intensity.max()) > 0.0:
                self.overlay.set_map(intensity, label.geometry.rows, label.geometry.cols)
                self._heatmap_label = label
                self._heatmap_legend = legend
                self.heatmap_note.setText(label.display_name)
            else:  # an empty map is no heatmap: nothing is drawn, and the export must not say "shown"
                self.heatmap_note.setText(f"No heatmap: {label.display_name} is below the "
                                          f"{self.display.gate} cut-off, where the heatmap stays dark.")
        self.overlay.set_enabled(self.heatmap_check.isChecked())
        available = self.overlay.has_map
        self.heatmap_check.setEnabled(available)
        self.opacity_slider.setEnabled(available)
        self.color_bar.setVisible(available and self._heatmap_label is not None)
        if self._heatmap_label is not None:
            self.color_bar.set_colormap(self.display.colormap, self._heatmap_legend.low_text,
                                        self._heatmap_legend.high_text)

    def _effective_heatmap(self) -> bool:
        """Whether a heatmap is on screen now."""
        return bool(self.overlay.has_map and self.heatmap_check.isChecked() and self._ai_revealed)

    def ai_text(self) -> str:
        """The AI box's text as the reader reads it (no markup)."""
        from PySide6.QtGui import QTextDocumentFragment

        return QTextDocumentFragment.fromHtml(self.ai_label.text()).toPlainText()

    def heatmap_shown(self) -> bool:
        """Whether the overlay is drawn over the image (for tests and the screenshot)."""
        return self.overlay.is_shown() and self.overlay.item.isVisible()

    def show_image(self, index: int) -> None:
        if not self._images:
            return
        self._image_index = index % len(self._images)
        path = self._images[self._image_index]
        self.image_label.setText(f"{self._image_index + 1} / {len(self._images)}")
        self.previous_image.setEnabled(len(self._images) > 1)
        self.next_image.setEnabled(len(self._images) > 1)
        self.view.case_caption = self.case.case_code if self.case else ""
        self.overlay.clear()  # the last image's map never lies over the next one
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
        if self.case is not None:
            self.timer.record("image", index=self._image_index + 1)
        self._update_ai_for_image()

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
        value = int(round(value))
        if self.confidence_spin.value() == value:
            self._on_confidence(value)  # the reader confirmed the value shown
        else:
            self.confidence_spin.setValue(value)

    def set_agreement(self, value: str) -> None:
        if self.case is None or not self.case.ai or not self._asks_agreement:
            return
        self.agreement_group.button(1 if value == "agree" else 0).setChecked(True)
        self.timer.record("agreement", agree=value == "agree")

    def _on_decision(self, value: int) -> None:
        self.timer.decision_made()
        self.timer.record("decision", decision=value)

    def _on_rating(self, value: int) -> None:
        self.timer.decision_made()
        self.timer.record("rating", rating=value)

    def _on_slider(self, value: int) -> None:
        if self.confidence_spin.value() != value:
            self.confidence_spin.setValue(value)
        elif not self._confidence_set:
            self._on_confidence(value)  # a click on the handle where it already is sets that value

    def _on_confidence(self, value: int) -> None:
        if value == NO_CONFIDENCE:
            self._confidence_set = False
            return
        self._confidence_set = True
        if self.confidence_slider.value() != value:
            self.confidence_slider.blockSignals(True)
            self.confidence_slider.setValue(value)
            self.confidence_slider.blockSignals(False)
        self.timer.decision_made()
        self.timer.record("confidence", confidence=value)

    def _on_heatmap_toggled(self, on: bool) -> None:
        self.overlay.set_enabled(on)
        visible = self._effective_heatmap()
        if self.case is not None and self._ai_results:
            self.timer.record("heatmap", visible=visible, available=self.overlay.has_map, by="reader",
                              image=self._image_index + 1)
        self._heatmap_visible = visible

    def _on_opacity(self, value: int) -> None:
        self.overlay.set_opacity(value / 100.0)
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

    # ----- closing -----------------------------------------------------------------------------
    def closeEvent(self, event) -> None:  # noqa: N802 - Qt naming
        """Closing (the window's button, Alt+F4) while a case is on screen asks first; saved reads
        are safe either way, and the reader resumes at this case."""
        if self.case is None or self._leave_confirmed:
            self.overlay.detach()
            super().closeEvent(event)
            return
        event.ignore()
        if self.close_dialog is not None and self.close_dialog.isVisible():
            return
        dialog = QMessageBox(QMessageBox.Icon.Question, "Leave the reading?",
                             f"Case {self.case.case_code} is not saved: what you entered for it will be lost. "
                             "Your saved reads are kept, and you will resume at this case.",
                             QMessageBox.StandardButton.NoButton, self)
        leave = dialog.addButton("Leave", QMessageBox.ButtonRole.AcceptRole)
        stay = dialog.addButton("Keep reading", QMessageBox.ButtonRole.RejectRole)
        dialog.setDefaultButton(stay)
        dialog.setWindowModality(Qt.WindowModality.WindowModal)
        dialog.buttonClicked.connect(lambda button: self._leave() if button is leave else None)
        self.close_dialog = dialog
        dialog.open()  # not exec(): nothing waits in a nested event loop for the answer

    def _leave(self) -> None:
        self._leave_confirmed = True
        self.timer.record("left")
        self.close()

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
        if self.uses_confidence and not self._confidence_set:
            self.message.setText("Set your confidence (probability present, 0-100 %): it has no default.")
            return
        rating = self.rating_group.checkedId()
        if self.uses_rating and rating < 0:
            self.message.setText("Choose a rating from 1 to 5.")
            return
        agreement = None
        if case.ai and self._asks_agreement:
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
