"""The AI panel: what the classifiers think of the image shown, and where they looked.

A right-hand dock. At the top, in one line each: the image's verdict (positive / doubt /
negative / outside scope, as commercial fracture AI shows it), the study's verdict over the views
predicted so far, the image's region line and each model's scope verdict ("no scope check" for a
model without one). Below, a table of the findings with probability, tier and cut-offs; the
provider that ran; a research-use notice; errors in words. Clicking a finding shows its heatmap
over the radiograph (:mod:`radreview.gui.heatmap_overlay`), with a colour bar in probability.

Every word and number the panel shows about the AI comes from
:mod:`radreview.inference.presentation`, the same functions the reading window and the exports
use. An image outside a model's scope shows its ``OUT_OF_SCOPE_MESSAGE``, no tier and no heatmap;
"Show findings anyway" reveals them, each marked "outside scope" (the heatmap too).

Inference runs by itself in a worker (:mod:`radreview.gui.inference_worker`) whenever the main
window shows another image; everything of the previous image is cleared at once, and a result
that arrives for an image no longer shown is dropped. ``install_ai_panel(window)`` wires all of
it into a main window.
"""

from __future__ import annotations

import logging
import time

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QAction, QColor, QFont, QKeySequence
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDockWidget,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSlider,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from radreview import RESEARCH_USE_NOTICE
from radreview.gui.ai_settings import CAM_METHODS, GATES, AiSettings, load_ai_settings, save_ai_settings
from radreview.gui.heatmap_overlay import ColorBar, HeatmapOverlay, heatmap_layer
from radreview.gui.inference_worker import AiController, EngineState, image_key
from radreview.inference.aggregate import aggregate_studies
from radreview.inference.cam import COLOR_MAPS
from radreview.inference.engine import ImageResult, LabelResult
from radreview.inference.presentation import (
    NO_HEATMAP,
    Finding,
    HeatmapLegend,
    ImagePresentation,
    legend_lines,
    present_heatmap,
    present_image,
    study_line,
)
from radreview.inference.sessions import PROVIDER_CHOICES, available_providers

log = logging.getLogger(__name__)
TIER_COLOURS = {"likely": "#d9534f", "possible": "#f0ad4e", "below": "#5cb85c", "": "#888888",
                "out_of_scope": "#888888"}
VERDICT_COLOURS = {"positive": "#d9534f", "doubt": "#f0ad4e", "negative": "#5cb85c",
                   "out_of_scope": "#b8860b", "none": "#888888"}
OPACITY_STEP = 0.1
# The model and version of each finding are in its tooltip and the status line: a fifth column
# would push the cut-offs out of the dock.
COLUMNS = ("Finding", "Probability", "Tier", "Cut-offs")
REVEAL_TEXT = "Show findings anyway"
HIDE_TEXT = "Hide out-of-scope findings"


class FindingsTable(QTableWidget):
    """The findings table: every column readable in a narrow dock, the cut-offs never pushed out.

    Finding and tier take their text's width up to a share of the table and wrap beyond it (a
    revealed "outside scope (cut-offs: possible)" is long); the cut-offs (or why there are none)
    take the rest and wrap: visible, not a tooltip. No horizontal scrolling.
    """

    SHARES = (0.32, 1.0, 0.25)  # the most each of the first three columns may take (a probability is short)

    def __init__(self, parent=None) -> None:
        super().__init__(0, len(COLUMNS), parent)
        self.setHorizontalHeaderLabels(list(COLUMNS))
        self.verticalHeader().setVisible(False)
        header = self.horizontalHeader()
        for column in range(len(COLUMNS) - 1):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(len(COLUMNS) - 1, QHeaderView.ResizeMode.Stretch)
        self.setWordWrap(True)
        self.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)

    def fit_columns(self) -> None:
        width = self.viewport().width()
        header = self.horizontalHeader()
        for column, share in enumerate(self.SHARES):
            wanted = max(self.sizeHintForColumn(column), header.sectionSizeHint(column))
            header.resizeSection(column, min(wanted, int(width * share)))
        self.resizeRowsToContents()

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt naming
        super().resizeEvent(event)
        self.fit_columns()


class AiPanel(QWidget):
    """Signals: ``results_shown(ImageResult)`` once the lines, table and heatmap are filled."""

    results_shown = Signal(object)

    def __init__(self, settings: AiSettings | None = None, parent: QWidget | None = None,
                 save_settings: bool = True) -> None:
        super().__init__(parent)
        self.settings = settings if settings is not None else load_ai_settings()
        self.save_settings = save_settings
        self.controller = AiController(self)
        self.overlay = HeatmapOverlay(self.settings.colormap, self.settings.opacity)
        self.overlay.set_enabled(self.settings.show_heatmap)
        self.result: ImageResult | None = None
        self.presentation: ImagePresentation | None = None
        self.legend: HeatmapLegend = NO_HEATMAP  # the heatmap shown (or why none is)
        self.revealed = False  # the reader asked to see the findings of an out-of-scope image
        self.selected: str | None = None  # "model/label" whose heatmap is shown
        self.state: EngineState | None = None
        self._key: tuple | None = None
        self._decoded = None
        self._study_of: dict[tuple, str] = {}  # image key -> study UID, for study-level verdicts
        self.dropped_results = 0  # results that arrived for an image no longer shown
        self.shown_at = 0.0  # perf_counter when the image was shown, for latency figures
        self.filled_at = 0.0
        self._build()
        self.controller.models_loaded.connect(self._on_models_loaded)
        self.controller.models_failed.connect(self._show_error)
        self.controller.busy_changed.connect(self._set_busy)
        self.controller.result_ready.connect(self._on_result)
        self.controller.failed.connect(self._on_failed)
        self.reload_models()

    # -- construction ----------------------------------------------------------------------
    def _build(self) -> None:
        notice = QLabel(RESEARCH_USE_NOTICE, self)
        notice.setWordWrap(True)
        notice.setStyleSheet("color: #b8860b; font-weight: bold;")
        self.verdict_label = QLabel("", self)
        self.verdict_label.setWordWrap(True)
        font = QFont(self.verdict_label.font())
        font.setBold(True)
        font.setPointSizeF(font.pointSizeF() * 1.15)
        self.verdict_label.setFont(font)
        self.reveal_button = QPushButton(REVEAL_TEXT, self)
        self.reveal_button.setCheckable(True)
        self.reveal_button.setToolTip("The models call this image outside what they were trained on: their "
                                      "findings are not answers. Show them anyway, each marked \"outside scope\".")
        self.reveal_button.toggled.connect(self.set_revealed)
        self.reveal_button.hide()
        self.study_label = QLabel("", self)
        self.study_label.setWordWrap(True)
        self.study_label.setToolTip("The study's verdict from the mean of its views' probabilities "
                                    "(views outside a model's scope left out), over the views predicted so far")
        self.region_label = QLabel("", self)
        self.region_label.setWordWrap(True)
        self.scope_label = QLabel("", self)
        self.scope_label.setWordWrap(True)
        self.scope_label.setStyleSheet("color: #888; font-size: 11px;")
        self.busy = QProgressBar(self)
        self.busy.setRange(0, 0)  # indeterminate
        self.busy.setMaximumHeight(8)
        self.busy.setTextVisible(False)
        self.busy.hide()
        self.status = QLabel("Loading models…", self)
        self.status.setWordWrap(True)
        self.error = QLabel("", self)
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #d9534f;")
        self.error.hide()

        self.table = FindingsTable(self)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.itemSelectionChanged.connect(self._on_row_selected)

        self.heatmap_box = QCheckBox("Heatmap (H)", self)
        self.heatmap_box.setChecked(self.settings.show_heatmap)
        self.heatmap_box.toggled.connect(self.set_heatmap_visible)
        self.heatmap_label = QLabel("", self)
        self.heatmap_label.setWordWrap(True)
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal, self)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(round(self.settings.opacity * 100))
        self.opacity_slider.setToolTip("Heatmap opacity (O / Shift+O)")
        self.opacity_slider.valueChanged.connect(lambda v: self.set_opacity(v / 100.0))
        self.colormap_combo = QComboBox(self)
        self.colormap_combo.addItems(COLOR_MAPS)
        self.colormap_combo.setCurrentText(self.settings.colormap)
        self.colormap_combo.currentTextChanged.connect(self.set_colormap)
        self.gate_combo = QComboBox(self)
        self.gate_combo.addItems(GATES)
        self.gate_combo.setCurrentText(self.settings.gate)
        self.gate_combo.setToolTip("Show heat only above this cut-off (every scale; a label without reliable "
                                   "cut-offs is gated at p 0.5)")
        self.gate_combo.currentTextChanged.connect(lambda g: self._change("gate", g))
        self.scale_combo = QComboBox(self)
        self.scale_combo.addItems(["absolute", "minmax"])
        self.scale_combo.setCurrentText(self.settings.cam_scale)
        self.scale_combo.setToolTip("absolute: one scale for every image, from the cut-off up (honest); "
                                    "minmax: from the cut-off up to this image's strongest evidence")
        self.scale_combo.currentTextChanged.connect(lambda s: self._change("cam_scale", s))
        self.span_spin = QDoubleSpinBox(self)
        self.span_spin.setRange(0.0, 200.0)
        self.span_spin.setDecimals(1)
        self.span_spin.setSingleStep(1.0)
        self.span_spin.setSpecialValueText("auto")
        self.span_spin.setSuffix(" logits")
        self.span_spin.setValue(self.settings.heatmap_span)
        self.span_spin.setToolTip("Absolute scale: how much evidence above the cut-off fills the colour bar, the "
                                  "same for every image. auto (0) = the model card's span, else 24 logits; the "
                                  "colour bar shows the probability its top stands for")
        self.span_spin.valueChanged.connect(lambda v: self._change("heatmap_span", float(v)))
        self.color_bar = ColorBar(self)

        self.run_button = QPushButton("Run", self)
        self.run_button.setToolTip("Run the classifiers on the image shown")
        self.run_button.clicked.connect(self.run_now)
        self.settings_button = QPushButton("Settings…", self)
        self.settings_button.clicked.connect(self.open_settings)

        controls = QFormLayout()
        controls.addRow(self.heatmap_box, self.heatmap_label)
        controls.addRow("Opacity", self.opacity_slider)
        controls.addRow("Colour map", self.colormap_combo)
        controls.addRow("Threshold", self.gate_combo)
        controls.addRow("Scale", self.scale_combo)
        self.span_label = QLabel("", self)
        self.span_label.setStyleSheet("color: #888; font-size: 10px;")
        self.span_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        span_row = QHBoxLayout()
        span_row.addWidget(self.span_spin)
        span_row.addWidget(self.span_label, 1)
        controls.addRow("Span", span_row)
        controls.addRow(self.color_bar)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addStretch(1)
        buttons.addWidget(self.settings_button)

        # Text that changes with every image must never widen the dock: a wider dock narrows the
        # image pane, which refits the radiograph under the reader's eyes.
        for label in (notice, self.verdict_label, self.study_label, self.region_label, self.scope_label,
                      self.status, self.error, self.heatmap_label):
            label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        layout = QVBoxLayout(self)
        layout.addWidget(notice)
        layout.addWidget(self.verdict_label)
        layout.addWidget(self.reveal_button)
        layout.addWidget(self.study_label)
        layout.addWidget(self.region_label)
        layout.addWidget(self.scope_label)
        layout.addWidget(self.busy)
        layout.addWidget(self.table, 1)
        layout.addLayout(controls)
        layout.addWidget(self.status)
        layout.addWidget(self.error)
        layout.addLayout(buttons)
        for label in (self.verdict_label, self.study_label, self.region_label, self.scope_label):
            _set_line(label, "")
        self._show_legend(NO_HEATMAP)

    # -- models ----------------------------------------------------------------------------
    def reload_models(self) -> None:
        self.state = None
        self.status.setText("Loading models…")
        st = self.settings
        self.controller.load_models(st.model_dirs(), st.provider, st.backend, st.checkpoint, st.cam_method, st.precision)

    def _model_problems(self) -> str:
        """Models that were refused, card notes (e.g. unusable scope statistics) and provider
        fallbacks: shown until the models change."""
        if self.state is None:
            return ""
        notes = [f"{_model_path(m)}: {note}" for m in getattr(self.state.engine, "models", ())
                 for note in getattr(m.card, "notes", ())]
        return "\n".join([str(p) for p in self.state.problems] + notes + self.state.engine.provider_notes)

    def _on_models_loaded(self, state: EngineState) -> None:
        self.state = state
        engine = state.engine
        if engine.models:
            names = ", ".join(f"{m.card.name} {m.card.version}" for m in engine.models)
            extra = f" ({state.description})" if state.description else ""
            self.status.setText(f"Models: {names}{extra}\nProvider: {engine.provider}")
        else:
            self.status.setText("No usable model found. Add .onnx models to the models folder (Settings…).")
        self._show_error(self._model_problems())

    # -- images ----------------------------------------------------------------------------
    def on_image_changed(self, entry, decoded) -> None:
        """The main window shows another image (or none, or is loading one): forget everything
        of the last one at once, then predict the new one."""
        self.shown_at = time.perf_counter()
        self.clear_image()
        if decoded is None:
            self._key = self._decoded = None
            self.controller.cancel()
            return
        self._key, self._decoded = image_key(entry, decoded), decoded
        self._study_of[self._key] = getattr(entry, "study_uid", "")
        if self.settings.auto_run:
            self.controller.request(self._key, decoded)
        else:
            self.controller.cancel()

    def clear_image(self) -> None:
        """Nothing of an image stays: verdict, study, region and scope lines, table, heatmap."""
        self.result = None
        self.presentation = None
        self.revealed = False
        # each image opens on its own most important finding: a label picked on the last image
        # would leave a fracture-positive one without a heatmap under a "Positive" verdict
        self.selected = None
        self.reveal_button.blockSignals(True)
        self.reveal_button.setChecked(False)
        self.reveal_button.setText(REVEAL_TEXT)
        self.reveal_button.blockSignals(False)
        self.reveal_button.hide()
        for label in (self.verdict_label, self.study_label, self.region_label, self.scope_label):
            _set_line(label, "")
        self.table.blockSignals(True)
        self.table.setRowCount(0)
        self.table.blockSignals(False)
        self._clear_heatmap()
        self._show_error(self._model_problems())

    def run_now(self) -> None:
        if self._decoded is not None:
            self.controller.request(self._key, self._decoded)

    def _set_busy(self, busy: bool) -> None:
        self.busy.setVisible(busy)

    def _on_failed(self, key: tuple, message: str) -> None:
        if key != self._key:
            self.dropped_results += 1
            return
        problems = self._model_problems()
        self._show_error(f"The classifiers could not run on this image: {message}" + (f"\n{problems}" if problems else ""))

    def _show_error(self, text: str) -> None:
        self.error.setText(text)
        self.error.setVisible(bool(text))

    def _on_result(self, key: tuple, result: ImageResult) -> None:
        if key != self._key:  # for an image no longer shown: never drawn
            self.dropped_results += 1
            return
        self.result = result
        self.presentation = present_image(result)
        self._fill()
        self.filled_at = time.perf_counter()
        self._show_study(key)
        if result.errors:  # a model that failed on this image: the others' answers stand, its failure is said
            self._show_error("\n".join([*result.errors.values(), self._model_problems()]).strip())
        self.results_shown.emit(result)

    def _fill(self) -> None:
        shown = self.presentation
        if shown is None:
            return
        _set_line(self.verdict_label, shown.verdict_text)
        self.verdict_label.setStyleSheet(f"color: {VERDICT_COLOURS.get(shown.verdict, '#888888')};")
        hidden = [f for f in shown.findings if not f.shown]
        self.reveal_button.setVisible(bool(hidden))
        _set_line(self.region_label, shown.region_line)
        _set_line(self.scope_label, "\n".join(s.text for s in shown.scopes))
        self.scope_label.setToolTip(shown.scope_text)
        rows = self.rows_shown()
        self.table.blockSignals(True)
        self.table.setRowCount(len(rows))
        for row, finding in enumerate(rows):
            self._fill_row(row, finding)
        self.table.fit_columns()
        keys = [f.key for f in rows]
        wanted = self.selected if self.selected in keys else (keys[0] if keys else None)
        self.table.clearSelection()
        if wanted is not None:
            self.table.selectRow(keys.index(wanted))
        self.table.blockSignals(False)
        self.selected = wanted
        self._show_heatmap()

    def rows_shown(self) -> tuple[Finding, ...]:
        """The findings in the table: those shown as answers, and the out-of-scope ones once revealed."""
        if self.presentation is None:
            return ()
        return self.presentation.findings if self.revealed else self.presentation.shown_findings

    def set_revealed(self, on: bool) -> None:
        """Show (or hide again) the findings of a model that calls the image outside its scope."""
        self.revealed = bool(on)
        if self.reveal_button.isChecked() != self.revealed:
            self.reveal_button.blockSignals(True)
            self.reveal_button.setChecked(self.revealed)
            self.reveal_button.blockSignals(False)
        self.reveal_button.setText(HIDE_TEXT if self.revealed else REVEAL_TEXT)
        self._fill()

    def _show_study(self, key: tuple) -> None:
        """The study's verdict over its views predicted so far (the mean per label, as MURA/LERA scored studies)."""
        study = self._study_of.get(key, "")
        signature = self.state.signature if self.state else ()
        views = [result for (image, sig), result in self.controller.cache.items()
                 if sig == signature and study and self._study_of.get(image) == study]
        _set_line(self.study_label, study_line(aggregate_studies((study, v) for v in views)) if views else "")

    def _fill_row(self, row: int, finding: Finding) -> None:
        line = finding.line(self.revealed)
        name = QTableWidgetItem(finding.display_name)
        name.setData(Qt.ItemDataRole.UserRole, finding.key)
        name.setToolTip(f"{line}\n{finding.model} {finding.version} ({finding.task})")
        probability = QTableWidgetItem(finding.probability_text)
        probability.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        tier = QTableWidgetItem(finding.revealed_tier_text if self.revealed else finding.tier_text)
        tier.setForeground(QColor(TIER_COLOURS.get(finding.tier, "#888888")))
        cutoffs = QTableWidgetItem(finding.cutoffs_text)
        if finding.note:  # no tier: the reason takes the tier's place
            cutoffs.setForeground(QColor(TIER_COLOURS[""]))
        items = (name, probability, tier, cutoffs)
        for column, item in enumerate(items):
            if column:
                item.setToolTip(f"{line}\n{finding.model} {finding.version}")
            if not finding.shown:  # revealed, not an answer: marked in every cell
                item.setFont(_italic(item.font()))
            self.table.setItem(row, column, item)

    def _on_row_selected(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return
        self.selected = self.table.item(rows[0].row(), 0).data(Qt.ItemDataRole.UserRole)
        self._show_heatmap()

    def select_label(self, key: str) -> None:
        """Show the heatmap of ``model/label`` (what a click on its row does)."""
        for row in range(self.table.rowCount()):
            if self.table.item(row, 0).data(Qt.ItemDataRole.UserRole) == key:
                self.table.selectRow(row)
                return

    def selected_result(self) -> LabelResult | None:
        if self.result is None:
            return None
        return next((r for r in self.result.labels if r.key == self.selected), None)

    def table_rows(self) -> list[tuple[str, ...]]:
        """The table's text, row by row (for tests and the exported legend's checks)."""
        return [tuple(self.table.item(r, c).text() for c in range(self.table.columnCount()))
                for r in range(self.table.rowCount())]

    # -- heatmap ---------------------------------------------------------------------------
    def attach_view(self, view) -> None:
        if view is not self.overlay.view and self.overlay.view is not None:
            self.overlay.view.set_overlay_note("")
        self.overlay.attach(view)

    def _clear_heatmap(self) -> None:
        self.overlay.clear()
        if self.overlay.view is not None:
            self.overlay.view.set_overlay_note("")
        self._show_legend(NO_HEATMAP)

    def heatmap_legend(self, label: LabelResult | None = None) -> HeatmapLegend:
        """The presentation of ``label``'s heatmap (default: the selected one) under the panel's settings."""
        label = label if label is not None else self.selected_result()
        st = self.settings
        return present_heatmap(label, st.cam_scale, st.gate, st.heatmap_span, self.revealed)

    def _show_heatmap(self) -> None:
        label = self.selected_result()
        legend = self.heatmap_legend(label)
        if label is None or label.geometry is None:
            self._clear_heatmap()
            return
        if not legend.drawn:
            self.overlay.clear()
            if self.overlay.view is not None:
                self.overlay.view.set_overlay_note("")
            self._show_legend(legend)
            return
        try:
            intensity = heatmap_layer(label, legend)
        except ValueError as exc:
            self._clear_heatmap()
            self._show_error(str(exc))
            return
        self.overlay.set_map(intensity, label.geometry.rows, label.geometry.cols)
        if self.overlay.view is not None:
            self.overlay.view.set_overlay_note(f"Heatmap: {legend.title}" if legend.out_of_scope else "")
        self._show_legend(legend)

    def _show_legend(self, legend: HeatmapLegend) -> None:
        self.legend = legend
        text = legend.title + (f" — {legend.note}" if legend.note and legend.title else legend.note)
        self.heatmap_label.setText(text)
        self.heatmap_label.setStyleSheet("color: #b8860b;" if legend.out_of_scope else "")
        self.span_label.setText(legend.span_text if legend.key and legend.mode == "absolute" else "")
        self.color_bar.set_colormap(self.settings.colormap, legend.low_text, legend.high_text)

    def export_legend(self) -> tuple[list[str], HeatmapLegend]:
        """The lines an exported view carries (verdict, study, region, scope, findings, heatmap,
        notice) and the heatmap whose colour bar it draws."""
        shown = self.presentation if self.presentation is not None else present_image(None)
        models = ""
        if self.state is not None and self.state.engine.models:
            models = "Models: " + ", ".join(f"{m.card.name} {m.card.version}" for m in self.state.engine.models)
        legend = self.legend if self.overlay.is_shown() or not self.legend.drawn else NO_HEATMAP
        return legend_lines(shown, legend, self.revealed, self.study_label.text(), models), legend

    def set_heatmap_visible(self, on: bool) -> None:
        self.overlay.set_enabled(on)
        if self.heatmap_box.isChecked() != bool(on):
            self.heatmap_box.setChecked(bool(on))
        self._change("show_heatmap", bool(on), redraw=False)

    def toggle_heatmap(self) -> None:
        self.set_heatmap_visible(not self.overlay.enabled)

    def set_opacity(self, opacity: float) -> None:
        opacity = min(1.0, max(0.0, opacity))
        self.overlay.set_opacity(opacity)
        if self.opacity_slider.value() != round(opacity * 100):
            self.opacity_slider.setValue(round(opacity * 100))
        self._change("opacity", opacity, redraw=False)

    def step_opacity(self, step: float) -> None:
        self.set_opacity(self.overlay.opacity() + step)

    def set_colormap(self, name: str) -> None:
        self.overlay.set_colormap(name)
        if self.colormap_combo.currentText() != name:
            self.colormap_combo.setCurrentText(name)
        self._change("colormap", name, redraw=False)
        self._show_legend(self.legend)

    def _change(self, field_name: str, value, redraw: bool = True) -> None:
        setattr(self.settings, field_name, value)
        if self.save_settings:
            save_ai_settings(self.settings)
        if redraw:
            self._show_heatmap()

    # -- settings dialog -------------------------------------------------------------------
    def open_settings(self) -> AiSettingsDialog:
        dialog = AiSettingsDialog(self.settings, self)
        dialog.accepted.connect(lambda: self.apply_settings(dialog.values()))
        dialog.open()
        return dialog

    def apply_settings(self, new: AiSettings) -> None:
        def engine_fields(s: AiSettings) -> tuple:
            return (s.provider, s.models_dir, s.backend, s.checkpoint, s.cam_method, s.precision)

        reload = engine_fields(new) != engine_fields(self.settings)
        self.settings = new
        if self.save_settings:
            save_ai_settings(new)
        self.set_opacity(new.opacity)
        self.set_colormap(new.colormap)
        self.run_button.setEnabled(True)
        if reload:
            self.clear_image()  # results of the old models are not this set's answers
            self.reload_models()
            if self._decoded is not None and new.auto_run:
                self.controller.request(self._key, self._decoded)

    def shutdown(self) -> None:
        self.controller.shutdown()
        self.overlay.detach()


def _set_line(label: QLabel, text: str) -> None:
    """A line of the panel's head: hidden when empty, so the lines below do not float."""
    label.setText(text)
    label.setVisible(bool(text))


def _model_path(model) -> str:
    """The file a loaded model came from (ONNX: ``model.file.path``; torch back end: ``model.path``)."""
    file = getattr(model, "file", None)
    return str(getattr(file, "path", None) or getattr(model, "path", None) or model.card.name)


def _italic(font: QFont) -> QFont:
    font = QFont(font)
    font.setItalic(True)
    return font


PRECISION_TEXT = {"auto": "int8 where the model has it (fast)", "int8": "int8",
                  "float32": "float32 (to check the difference)"}


class AiSettingsDialog(QDialog):
    """Provider, models folder, default opacity and colour map, auto-run."""

    def __init__(self, settings: AiSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("AI settings")
        self._settings = settings
        self.provider = QComboBox(self)
        offered = set(available_providers())
        for name in PROVIDER_CHOICES:
            self.provider.addItem(name if name == "auto" or name in offered else f"{name} (not available)", name)
        self.provider.setCurrentIndex(PROVIDER_CHOICES.index(settings.provider))
        self.precision = QComboBox(self)
        for key, text in PRECISION_TEXT.items():
            self.precision.addItem(text, key)
        self.precision.setCurrentIndex(max(0, self.precision.findData(settings.precision)))
        self.models_dir = QLineEdit(settings.models_dir, self)
        self.models_dir.setPlaceholderText("shipped and per-user models folders")
        browse = QPushButton("Browse…", self)
        browse.clicked.connect(self._browse)
        folder = QHBoxLayout()
        folder.addWidget(self.models_dir, 1)
        folder.addWidget(browse)
        self.opacity = QDoubleSpinBox(self)
        self.opacity.setRange(0.0, 1.0)
        self.opacity.setSingleStep(0.05)
        self.opacity.setValue(settings.opacity)
        self.colormap = QComboBox(self)
        self.colormap.addItems(COLOR_MAPS)
        self.colormap.setCurrentText(settings.colormap)
        self.auto_run = QCheckBox("Run the classifiers whenever an image is shown", self)
        self.auto_run.setChecked(settings.auto_run)
        self.backend = QComboBox(self)
        self.backend.addItem("ONNX models (CAM in the model)", "onnx")
        self.backend.addItem("torch checkpoint (.pt) with a Grad-CAM method — needs the [train] extra", "torch")
        self.backend.setCurrentIndex(max(0, self.backend.findData(settings.backend)))
        self.checkpoint = QLineEdit(settings.checkpoint, self)
        self.checkpoint.setPlaceholderText("checkpoint.pt written by radreview train")
        browse_checkpoint = QPushButton("Browse…", self)
        browse_checkpoint.clicked.connect(self._browse_checkpoint)
        checkpoint_row = QHBoxLayout()
        checkpoint_row.addWidget(self.checkpoint, 1)
        checkpoint_row.addWidget(browse_checkpoint)
        self.cam_method = QComboBox(self)
        for key, name in CAM_METHODS.items():
            self.cam_method.addItem(name + (" (slow on the CPU)" if key == "scorecam" else ""), key)
        self.cam_method.setCurrentIndex(max(0, self.cam_method.findData(settings.cam_method)))
        form = QFormLayout(self)
        form.addRow("Back end", self.backend)
        form.addRow("Provider", self.provider)
        form.addRow("Precision", self.precision)
        form.addRow("Models folder", folder)
        form.addRow("Checkpoint", checkpoint_row)
        form.addRow("CAM method (torch)", self.cam_method)
        form.addRow("Default opacity", self.opacity)
        form.addRow("Colour map", self.colormap)
        form.addRow(self.auto_run)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Models folder", self.models_dir.text())
        if folder:
            self.models_dir.setText(folder)

    def _browse_checkpoint(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Checkpoint", self.checkpoint.text(), "Checkpoints (*.pt)")
        if path:
            self.checkpoint.setText(path)

    def values(self) -> AiSettings:
        from dataclasses import replace

        return replace(
            self._settings,
            provider=self.provider.currentData(),
            precision=self.precision.currentData(),
            models_dir=self.models_dir.text().strip(),
            opacity=self.opacity.value(),
            colormap=self.colormap.currentText(),
            auto_run=self.auto_run.isChecked(),
            backend=self.backend.currentData(),
            checkpoint=self.checkpoint.text().strip(),
            cam_method=self.cam_method.currentData(),
        )


def install_ai_panel(window, settings: AiSettings | None = None, save_settings: bool = True) -> AiPanel:
    """Add the AI dock, its menu and keys to a main window and follow the image it shows.

    ``window`` provides ``current_image_changed(entry, decoded)``, ``active_view()`` and a free
    right dock area (see radreview.gui.main_window).
    """
    panel = AiPanel(settings, window, save_settings=save_settings)
    dock = QDockWidget("AI", window)
    dock.setObjectName("ai_dock")
    dock.setMinimumWidth(400)  # the findings with their cut-offs stay readable
    dock.setWidget(panel)
    window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
    window.ai_panel = panel
    window.ai_dock = dock

    def follow(entry, decoded) -> None:
        panel.attach_view(window.active_view())
        panel.on_image_changed(entry, decoded)

    window.current_image_changed.connect(follow)
    # H belongs to the heatmap (flip horizontal is Shift+H). Should another action of the window
    # ever hold H, the heatmap takes Shift+H rather than making both keys ambiguous.
    taken = {key.toString() for action in window.findChildren(QAction) for key in action.shortcuts()}
    heatmap_key = "H" if "H" not in taken else "Shift+H"
    window.installEventFilter(_ShutdownOnClose(panel, window))
    bar = window.menuBar()
    menu = bar.addMenu("&AI")
    help_menu = next((a for a in bar.actions() if a.text().replace("&", "") == "Help"), None)
    if help_menu is not None:  # keep Help last, as users expect
        bar.insertMenu(help_menu, menu)
    for text, keys, slot in (
        ("Show &Heatmap", (heatmap_key,), panel.toggle_heatmap),
        ("Heatmap &More Opaque", ("O",), lambda: panel.step_opacity(OPACITY_STEP)),
        ("Heatmap &Less Opaque", ("Shift+O",), lambda: panel.step_opacity(-OPACITY_STEP)),
        ("&Run Classifiers", ("Ctrl+R",), panel.run_now),
        ("AI &Settings…", (), panel.open_settings),
    ):
        action = QAction(text, window)
        action.setShortcuts([QKeySequence(k) for k in keys])
        action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        action.triggered.connect(slot)
        menu.addAction(action)
        window.addAction(action)
        if keys:  # listed in Help ▸ Keyboard Shortcuts beside the window's own actions
            window.extra_shortcuts.append((", ".join(keys), "AI", text.replace("&", "").rstrip("…")))
    menu.addAction(dock.toggleViewAction())
    panel.heatmap_key = heatmap_key
    panel.heatmap_box.setText(f"Heatmap ({heatmap_key})")
    return panel


class _ShutdownOnClose(QObject):
    """Stops the AI worker when the window closes (the window's own close handling is untouched)."""

    def __init__(self, panel: AiPanel, parent: QObject) -> None:
        super().__init__(parent)
        self.panel = panel

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt naming
        if event.type() == QEvent.Type.Close:
            self.panel.shutdown()
        return False
