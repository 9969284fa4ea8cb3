"""The AI panel: what the classifiers think of the image shown, and where they looked.

A right-hand dock listing each applicable label with its probability, operating-point tier,
model name and version; the provider that ran; a research-use notice; errors in words. Clicking
a label shows its heatmap over the radiograph (:mod:`radreview.gui.heatmap_overlay`). Inference
runs by itself in a worker (:mod:`radreview.gui.inference_worker`) whenever the main window
shows another image. ``install_ai_panel(window)`` wires all of it into a main window.
"""

from __future__ import annotations

import logging
import time

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QAction, QColor, QKeySequence
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
from radreview.gui.heatmap_overlay import ColorBar, HeatmapOverlay, heatmap_intensity
from radreview.gui.inference_worker import AiController, EngineState, image_key
from radreview.inference.aggregate import aggregate_studies
from radreview.inference.cam import COLOR_MAPS, CamDisplay, gate_probability
from radreview.inference.engine import REGION_TASK, ImageResult, LabelResult
from radreview.inference.sessions import PROVIDER_CHOICES, available_providers

log = logging.getLogger(__name__)
TIER_COLOURS = {"likely": "#d9534f", "possible": "#f0ad4e", "below": "#5cb85c", "": "#888888"}
OPACITY_STEP = 0.1


def format_probability(p: float) -> str:
    """Two decimals, without rounding a near-certainty to a certainty ("> 0.99", "< 0.01")."""
    if p > 0.99:
        return "> 0.99"
    if p < 0.01:
        return "< 0.01"
    return f"{p:.2f}"


class AiPanel(QWidget):
    """Signals: ``results_shown(ImageResult)`` once the table and heatmap are filled."""

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
        self.selected: str | None = None  # "model/label" whose heatmap is shown
        self.state: EngineState | None = None
        self._key: tuple | None = None
        self._decoded = None
        self._study_of: dict[tuple, str] = {}  # image key -> study UID, for study-level means
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
        self.study_label = QLabel("", self)
        self.study_label.setWordWrap(True)
        self.study_label.setToolTip("Study-level result: the mean of the per-view probabilities "
                                    "over the views of this study predicted so far")

        self.table = QTableWidget(0, 4, self)
        self.table.setHorizontalHeaderLabels(["Finding", "Probability", "Tier", "Model"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
        header = self.table.horizontalHeader()
        for column in (0, 1, 2):  # the finding, its probability and tier always readable
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)  # the model name elides
        self.table.setWordWrap(False)
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
        self.gate_combo.setToolTip("Show heat only above this operating point")
        self.gate_combo.currentTextChanged.connect(lambda g: self._change("gate", g))
        self.scale_combo = QComboBox(self)
        self.scale_combo.addItems(["absolute", "minmax"])
        self.scale_combo.setCurrentText(self.settings.cam_scale)
        self.scale_combo.setToolTip("absolute: one logit scale for every image (honest); "
                                    "minmax: stretched per image (always shows a hot spot)")
        self.scale_combo.currentTextChanged.connect(lambda s: self._change("cam_scale", s))
        self.span_spin = QDoubleSpinBox(self)
        self.span_spin.setRange(0.5, 200.0)
        self.span_spin.setSingleStep(2.0)
        self.span_spin.setSuffix(" logits")
        self.span_spin.setValue(self.settings.cam_span)
        self.span_spin.setToolTip("Absolute scale: local logits from the threshold to threshold + span fill the "
                                  "colour bar, the same for every image")
        self.span_spin.valueChanged.connect(lambda v: self._change("cam_span", float(v)))
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
        controls.addRow("Span", self.span_spin)
        controls.addRow(self.color_bar)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addStretch(1)
        buttons.addWidget(self.settings_button)

        # Text that changes with every image must never widen the dock: a wider dock narrows the
        # image pane, which refits the radiograph under the reader's eyes.
        for label in (notice, self.status, self.error, self.study_label, self.heatmap_label):
            label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        layout = QVBoxLayout(self)
        layout.addWidget(notice)
        layout.addWidget(self.busy)
        layout.addWidget(self.status)
        layout.addWidget(self.error)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.study_label)
        layout.addLayout(controls)
        layout.addLayout(buttons)
        self._update_color_bar()

    # -- models ----------------------------------------------------------------------------
    def reload_models(self) -> None:
        self.state = None
        self.status.setText("Loading models…")
        st = self.settings
        self.controller.load_models(st.model_dirs(), st.provider, st.backend, st.checkpoint, st.cam_method, st.precision)

    def _model_problems(self) -> str:
        """Models that were refused and provider fallbacks: shown until the models change."""
        if self.state is None:
            return ""
        return "\n".join([str(p) for p in self.state.problems] + self.state.engine.provider_notes)

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
        """The main window shows another image (or none): predict it, forget the last one."""
        self.shown_at = time.perf_counter()
        self.result = None
        self.table.setRowCount(0)
        self.overlay.clear()
        self._show_error(self._model_problems())
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

    def run_now(self) -> None:
        if self._decoded is not None:
            self.controller.request(self._key, self._decoded)

    def _set_busy(self, busy: bool) -> None:
        self.busy.setVisible(busy)

    def _on_failed(self, key: tuple, message: str) -> None:
        if key == self._key:
            problems = self._model_problems()
            self._show_error(f"The classifiers could not run on this image: {message}" + (f"\n{problems}" if problems else ""))

    def _show_error(self, text: str) -> None:
        self.error.setText(text)
        self.error.setVisible(bool(text))

    def _on_result(self, key: tuple, result: ImageResult) -> None:
        if key != self._key:
            return
        self.result = result
        # findings first (what the reader came for), then the region link of the chain
        rows = sorted(result.labels, key=lambda r: (r.task == REGION_TASK, r.task, -r.probability))
        self.table.blockSignals(True)
        self.table.setRowCount(len(rows))
        for row, label in enumerate(rows):
            self._fill_row(row, label)
        wanted = self.selected if any(r.key == self.selected for r in rows) else self._default_label(rows)
        for row, label in enumerate(rows):
            if label.key == wanted:
                self.table.selectRow(row)
        self.table.blockSignals(False)
        self.selected = wanted
        regions = ", ".join(result.regions) or "—"
        provider = "+".join(result.providers) or "?"
        engine_text = self.status.text().split("\n")[0] if self.status.text() else ""
        self.status.setText(f"{engine_text}\nProvider: {provider} · region: {regions}")
        self._show_heatmap()
        self.filled_at = time.perf_counter()
        self._show_study(key)
        self.results_shown.emit(result)

    def _show_study(self, key: tuple) -> None:
        """The mean over this study's predicted views (as MURA/LERA scored studies), once there are two."""
        study = self._study_of.get(key, "")
        signature = self.state.signature if self.state else ()
        views = [result for (image, sig), result in self.controller.cache.items()
                 if sig == signature and study and self._study_of.get(image) == study]
        if len(views) < 2:
            self.study_label.setText("")
            return
        rows = [r for r in aggregate_studies((study, v) for v in views) if r.task != REGION_TASK]
        parts = [f"{r.label} {r.probability:.2f}" + (f" ({r.tier})" if r.tier else "") for r in rows]
        self.study_label.setText(f"Study, mean of {len(views)} views: " + "; ".join(parts))

    @staticmethod
    def _default_label(rows: list[LabelResult]) -> str | None:
        findings = [r for r in rows if r.task != REGION_TASK] or rows
        return max(findings, key=lambda r: r.probability).key if findings else None

    def _fill_row(self, row: int, label: LabelResult) -> None:
        name = QTableWidgetItem(label.display_name)
        name.setData(Qt.ItemDataRole.UserRole, label.key)
        name.setToolTip(f"{label.label} ({label.task})")
        probability = QTableWidgetItem(format_probability(label.probability))
        probability.setToolTip(f"p = {label.probability:.6f}, logit {label.logit:+.2f}")
        probability.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        tier = QTableWidgetItem(label.tier or "—")
        tier.setForeground(QColor(TIER_COLOURS.get(label.tier, "#888888")))
        if label.possible is not None:
            tier.setToolTip(f"possible ≥ {label.possible:.2f}, likely ≥ {label.likely:.2f}")
        model = QTableWidgetItem(f"{label.model} {label.version}")
        model.setToolTip(f"{label.model} {label.version} ({label.task})")
        for column, item in enumerate((name, probability, tier, model)):
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

    # -- heatmap ---------------------------------------------------------------------------
    def attach_view(self, view) -> None:
        self.overlay.attach(view)

    def _show_heatmap(self) -> None:
        label = self.selected_result()
        if label is None or label.geometry is None:
            self.overlay.clear()
            self.heatmap_label.setText("")
            return
        try:
            intensity = heatmap_intensity(label, self.settings.cam_scale, self.settings.gate,
                                          span=self.settings.cam_span)
        except ValueError as exc:
            self.overlay.clear()
            self._show_error(str(exc))
            return
        self.overlay.set_map(intensity, label.geometry.rows, label.geometry.cols)
        empty = " (nothing above the threshold)" if intensity.max() == 0 else ""
        self.heatmap_label.setText(f"{label.display_name}{empty}")
        self._update_color_bar()

    def _update_color_bar(self) -> None:
        label = self.selected_result()
        if label is not None and label.cam_units == "relative":
            self.color_bar.set_colormap(self.settings.colormap, "relative (per image)", "image max")
            return
        gate = gate_probability(label, self.settings.gate) if label else 0.5
        low, high = CamDisplay(mode=self.settings.cam_scale, gate=gate,  # type: ignore[arg-type]
                               span_logits=self.settings.cam_span).scale_labels()
        self.color_bar.set_colormap(self.settings.colormap, low, high)

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
        self._update_color_bar()

    def _change(self, field_name: str, value, redraw: bool = True) -> None:
        setattr(self.settings, field_name, value)
        if self.save_settings:
            save_ai_settings(self.settings)
        if redraw:
            self._show_heatmap()
            self._update_color_bar()

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
            self.reload_models()
            if self._decoded is not None and new.auto_run:
                self.controller.request(self._key, self._decoded)

    def shutdown(self) -> None:
        self.controller.shutdown()
        self.overlay.detach()


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
    dock.setMinimumWidth(360)
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
