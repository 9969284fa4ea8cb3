"""Inference for the viewer: models loaded and images predicted in a worker thread.

:class:`AiController` owns the :class:`~radreview.inference.engine.Engine` (built in the worker,
since creating sessions takes a while), runs the chain on the image being shown, caches results
per image and model versions, and drops results the user no longer wants: a new image cancels
the pending one (a queued task never starts; a running one finishes but its result is ignored).
Everything it tells the GUI goes through queued signals, so the event loop never waits.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path
from dataclasses import dataclass, field

from PySide6.QtCore import QObject, Signal

from radreview.gui.workers import Task, TaskRunner
from radreview.inference.engine import Engine, ImageResult
from radreview.inference.preprocess import ImageInputError
from radreview.inference.registry import ModelProblem, discover

log = logging.getLogger(__name__)
CACHE_SIZE = 128  # results are small (probabilities and coarse CAMs)


@dataclass
class EngineState:
    engine: Engine  # or radreview.training.torch_cam.TorchCamEngine (same surface)
    problems: list[ModelProblem] = field(default_factory=list)
    description: str = ""  # e.g. "torch Grad-CAM on run.pt"

    @property
    def signature(self) -> tuple[str, ...]:
        own = getattr(self.engine, "signature", None)
        if own is not None:
            return tuple(own)
        return tuple(sorted(f"{m.card.name} {m.card.version} {m.card.weights_sha256[:12]}" for m in self.engine.models))


class BackendUnavailable(RuntimeError):
    """The torch back end was asked for but the [train] extra is not installed."""


def load_engine(model_dirs, provider: str, backend: str = "onnx", checkpoint: str = "",
                cam_method: str = "gradcam", precision: str = "auto") -> EngineState:
    """Discover, check and load the models (runs in the worker)."""
    if backend == "torch":
        if not checkpoint:
            raise ValueError("the torch back end needs a checkpoint (.pt): choose one in AI settings")
        try:  # lazy, and only here: the packaged viewer ships without torch
            from radreview.training.torch_cam import TorchCamEngine
        except ImportError as exc:
            raise BackendUnavailable(f"the torch back end needs the [train] extra (torch, grad-cam): {exc}") from exc
        engine = TorchCamEngine(checkpoint, cam_method)
        return EngineState(engine, [], f"torch {engine.method_name} on {Path(checkpoint).name}")  # type: ignore[arg-type]
    catalog = discover(model_dirs, precision=precision)
    engine = Engine(catalog.models, provider=provider, batch_size=1)
    return EngineState(engine, [*catalog.problems, *engine.problems, *catalog.notes])


def predict_decoded(engine: Engine, decoded, cancel) -> ImageResult:
    """The default-window displayed image (what the model was trained on) through the chain."""
    from radreview.studies import render_display

    if cancel():
        raise InterruptedError("cancelled")
    display = render_display(decoded)  # the file's default window, not the user's current one
    if not isinstance(engine, Engine):  # the torch back end: one call
        return engine.predict(display)
    prepared = engine.prepare(display)
    if cancel():
        raise InterruptedError("cancelled")
    return engine.infer([prepared], with_cam=True, cancel=cancel)[0]


def image_key(entry, decoded) -> tuple:
    return (str(getattr(entry, "path", "")), getattr(entry, "sop_instance_uid", ""), getattr(decoded, "frame", 0))


class AiController(QObject):
    """Signals: ``models_loaded(EngineState)``, ``models_failed(str)``, ``busy_changed(bool)``,
    ``result_ready(key, ImageResult)``, ``failed(key, str)``."""

    models_loaded = Signal(object)
    models_failed = Signal(str)
    busy_changed = Signal(bool)
    result_ready = Signal(object, object)
    failed = Signal(object, str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        # One thread: inference uses both cores through onnxruntime's own pool; a second
        # Python thread would only compete with the event loop.
        self.runner = TaskRunner(self, max_threads=1)
        self.state: EngineState | None = None
        self.cache: OrderedDict[tuple, ImageResult] = OrderedDict()
        self._loading: Task | None = None
        self._task: Task | None = None
        self._pending: tuple | None = None  # (key, decoded) waiting for the models
        self.current_key: tuple | None = None

    # -- models ----------------------------------------------------------------------------
    def load_models(self, model_dirs, provider: str, backend: str = "onnx", checkpoint: str = "",
                    cam_method: str = "gradcam", precision: str = "auto") -> None:
        if self._loading is not None:
            self._loading.cancel()
        self.state = None
        self.cache.clear()
        self.busy_changed.emit(True)
        self._loading = self.runner.start(
            lambda _p, _c: load_engine(model_dirs, provider, backend, checkpoint, cam_method, precision),
            on_done=self._on_loaded, on_error=self._on_load_failed, name="load models", priority=2,
        )

    def _on_loaded(self, state: EngineState) -> None:
        self._loading = None
        self.state = state
        self.models_loaded.emit(state)
        pending, self._pending = self._pending, None
        if pending is not None:
            self.request(*pending)
        else:
            self.busy_changed.emit(False)

    def _on_load_failed(self, exc: BaseException) -> None:
        self._loading = None
        self.busy_changed.emit(False)
        self.models_failed.emit(f"Could not load the models: {exc}")

    # -- images ----------------------------------------------------------------------------
    def request(self, key: tuple, decoded) -> None:
        """Predict the image ``decoded`` (identified by ``key``), or answer from the cache."""
        self.cancel()
        self.current_key = key
        if self.state is None:
            self._pending = (key, decoded)
            if self._loading is None:
                self.busy_changed.emit(False)
            return
        cache_key = (key, self.state.signature)
        cached = self.cache.get(cache_key)
        if cached is not None:
            self.cache.move_to_end(cache_key)
            self.busy_changed.emit(False)
            self.result_ready.emit(key, cached)
            return
        if not self.state.engine.models:
            self.busy_changed.emit(False)
            return
        engine = self.state.engine
        self.busy_changed.emit(True)
        self._task = self.runner.start(
            lambda _p, cancel: predict_decoded(engine, decoded, cancel),
            on_done=lambda result, k=key, ck=cache_key: self._on_result(k, ck, result),
            on_error=lambda exc, k=key: self._on_failed(k, exc),
            name="predict",
        )

    def cancel(self) -> None:
        """The user moved on: forget the pending image."""
        self._pending = None
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self.current_key = None

    def _on_result(self, key: tuple, cache_key: tuple, result: ImageResult) -> None:
        self.cache[cache_key] = result
        while len(self.cache) > CACHE_SIZE:
            self.cache.popitem(last=False)
        if key != self.current_key:
            return
        self._task = None
        self.busy_changed.emit(False)
        self.result_ready.emit(key, result)

    def _on_failed(self, key: tuple, exc: BaseException) -> None:
        if key != self.current_key or isinstance(exc, InterruptedError):
            return
        self._task = None
        self.busy_changed.emit(False)
        expected = isinstance(exc, (ImageInputError, ValueError, OSError))
        self.failed.emit(key, str(exc) if expected else f"{type(exc).__name__}: {exc}")

    def shutdown(self) -> None:
        self.cancel()
        self.runner.shutdown()
