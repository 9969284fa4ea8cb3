"""Batch prediction over files, folders and DICOMDIRs: a pipelined plain function (no Qt).

Worker threads each take a small chunk of images through decoding, the display pipeline,
preprocessing, the models and (optionally) the heatmap PNGs. PIL, pydicom's decoders, numpy and
onnxruntime release the GIL, so while one worker decodes another infers: the stages overlap
without handing arrays between threads. A bounded number of chunks is in flight (bounded memory),
results are collected in order, and a bad file becomes a reported problem, never an abort.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from radreview import RESEARCH_USE_NOTICE
from radreview.inference.aggregate import StudyLabelResult, aggregate_studies
from radreview.inference.cam import DEFAULT_OPACITY
from radreview.inference.engine import REGION_TASK, Engine, ImageResult, Prepared
from radreview.inference.fast_decode import display_gray
from radreview.inference.heatmap_files import HEATMAP_SERIES_DESCRIPTION, encode, overlay
from radreview.inference.preprocess import cam_to_image, display_shape
from radreview.inference.presentation import TIER_WORDS, HeatmapLegend, format_probability, present_heatmap

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]
Cancel = Callable[[], bool]
STAGES = ("index", "decode", "preprocess", "inference", "cam", "write")


@dataclass
class ImageRecord:
    """One image's result with both its pseudonym and its identifiers (exports choose)."""

    image_id: str
    study_id: str
    result: ImageResult | None
    path: Path
    patient_key: str = ""
    study_uid: str = ""
    sop_instance_uid: str = ""
    rows: int = 0
    cols: int = 0
    error: str = ""


@dataclass
class BatchResult:
    images: list[ImageRecord] = field(default_factory=list)
    studies: list[StudyLabelResult] = field(default_factory=list)
    problems: list[tuple[Path, str]] = field(default_factory=list)  # files that could not be used
    # What went wrong with an image that was still used: a model that failed on it (its reason is
    # also in that model's row), heatmaps that could not be written.
    notes: list[tuple[Path, str]] = field(default_factory=list)
    cam_files: list[Path] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    # CPU time of the threads in each stage: unlike ``seconds``, not inflated by other processes
    cpu_seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    wall_seconds: float = 0.0
    cancelled: bool = False


class _Timer:
    """Thread-safe sum of the time spent in each stage (stages overlap, so shares may exceed the wall),
    as wall time and as the CPU time of the thread that did it."""

    def __init__(self, totals: dict[str, float], cpu_totals: dict[str, float] | None = None) -> None:
        self.totals = totals
        self.cpu_totals = cpu_totals if cpu_totals is not None else dict.fromkeys(totals, 0.0)
        self.lock = threading.Lock()

    @staticmethod
    def mark() -> tuple[float, float]:
        return time.perf_counter(), time.thread_time()

    def since(self, stage: str, mark: tuple[float, float]) -> tuple[float, float]:
        """Add the time since ``mark`` to ``stage``; returns a new mark."""
        now = self.mark()
        with self.lock:
            self.totals[stage] += now[0] - mark[0]
            self.cpu_totals[stage] += now[1] - mark[1]
        return now

    def add(self, stage: str, seconds: float) -> None:
        with self.lock:
            self.totals[stage] += seconds


def _load(entry, engine: Engine, timer: _Timer, keep_display: bool) -> tuple[Prepared, np.ndarray | None]:
    mark = timer.mark()
    gray = display_gray(entry)
    mark = timer.since("decode", mark)
    prepared = engine.prepare(gray)
    timer.since("preprocess", mark)
    return prepared, (gray if keep_display else None)


def _process_chunk(chunk: list[int], entries, image_ids: list[str], engine: Engine, timer: _Timer,
                   cam_args: tuple) -> list[tuple]:
    """Decode, preprocess and predict a few images in one worker thread: (k, result, error, cam files).

    Each worker carries its images through every stage while the others are at other stages,
    so decoding and inference overlap without handing arrays between threads; the sessions
    run single-threaded (``threads=1``), which avoids onnxruntime's per-operator barriers
    stalling on a core that is busy decoding.
    """
    cam_path = cam_args[0]
    rows: list[tuple] = []
    loaded: list[tuple[int, Prepared, np.ndarray | None]] = []
    for k in chunk:
        try:
            prepared, gray = _load(entries[k], engine, timer, cam_path is not None)
        except Exception as exc:  # StudyLoadError, ImageInputError, decoder errors: skip the file
            rows.append((k, None, exc, [], []))
        else:
            loaded.append((k, prepared, gray))
    if loaded:
        mark = timer.mark()
        try:
            results = engine.infer([p for _, p, _ in loaded], with_cam=True)
        except Exception as exc:  # noqa: BLE001 - the engine contains each model's failure; this is the last fence
            log.warning("inference failed on a batch", exc_info=True)
            return sorted(rows + [(k, None, exc, [], []) for k, _, _ in loaded], key=lambda row: row[0])
        timer.since("inference", mark)
        for (k, _, gray), result in zip(loaded, results):
            files: list[Path] = []
            notes: list[str] = []
            if cam_path is not None and gray is not None:
                try:
                    files = _timed(timer, "cam", _write_cams, image_ids[k], result, gray, *cam_args)
                except Exception as exc:  # noqa: BLE001 - the results stand without their heatmaps
                    notes.append(f"heatmaps not written: {exc}")
            rows.append((k, result, None, files, notes))
    return sorted(rows, key=lambda row: row[0])


def display_base(gray: np.ndarray, max_side: int = 1024) -> np.ndarray:
    """The grey image at display resolution (at most ``max_side``), the base of every overlay."""
    from PIL import Image

    shape = display_shape(*gray.shape, max_side=max_side)
    return gray if shape == gray.shape else np.asarray(Image.fromarray(gray).resize(shape[::-1], Image.BILINEAR))


@dataclass(frozen=True)
class OverlayStyle:
    """How heatmap files and DICOM captures draw a label's map: the viewer's choices, as options.

    ``span``: the absolute scale's span in logits; None takes each label's span from its model
    card (else the default), as the viewer and the reading window do."""

    scale: str = "absolute"  # absolute / minmax
    span: float | None = None
    gate: str = "likely"
    colormap: str = "jet"
    opacity: float = DEFAULT_OPACITY
    max_side: int = 1024

    def legend(self, label, revealed: bool = False) -> HeatmapLegend:
        """The label's heatmap as the viewer would show it (:func:`present_heatmap`)."""
        return present_heatmap(label, self.scale, self.gate, self.span, revealed)


def shows_heatmap(label) -> bool:
    """Whether the viewer offers ``label``'s heatmap: findings do (the AI panel's table); the
    anatomical region labels are the region line, without one."""
    return label.task != REGION_TASK


def overlay_image(gray: np.ndarray, label, style: OverlayStyle = OverlayStyle(), base: np.ndarray | None = None,
                  legend: HeatmapLegend | None = None) -> np.ndarray | None:
    """The heatmap of one label blended over the grey image (RGB uint8, at most ``style.max_side``),
    or None when the label has no CAM. What ``--cam-dir`` writes and the DICOM secondary
    captures (radreview.pacs.sr) hold: the same intensities as the viewer's overlay, from the
    same :class:`HeatmapLegend`. ``base``: :func:`display_base` of ``gray``, when made already."""
    if label.cam is None or label.geometry is None:
        return None
    legend = style.legend(label) if legend is None else legend
    base = display_base(gray, style.max_side) if base is None else base
    heat = legend.intensity(cam_to_image(label.cam, label.geometry, base.shape[:2]))
    return overlay(base, heat, style.colormap, style.opacity)


def _write_cams(image_id: str, result: ImageResult, gray: np.ndarray, cam_dir: Path, style: OverlayStyle,
                all_labels: bool, fmt: str = "png") -> list[Path]:
    """One overlay file per finding whose heatmap the viewer would draw (``all_labels``: every label
    with a map, the anatomical region labels too, those outside the model's scope marked as shown
    on request)."""
    written = []
    base = None
    for label in result.labels:
        if not all_labels and not shows_heatmap(label):
            continue  # a region label: the viewer lists it as the region, with no heatmap
        legend = style.legend(label, revealed=all_labels)
        if label.cam is None or label.geometry is None or not (legend.drawn or all_labels):
            continue  # below its gate, no region above it, or outside the model's scope: no file
        base = display_base(gray, style.max_side) if base is None else base
        rgb = overlay_image(gray, label, style, base, legend)
        path = heatmap_path(cam_dir, image_id, label.model, label.label, "jpg" if fmt == "jpeg" else fmt)
        text = {"Description": f"{legend.title} heatmap, {label.model} {label.version}, "
                               f"p {format_probability(label.probability)} ({TIER_WORDS.get(label.tier, label.tier)}); "
                               f"{legend.mode} scale"
                               + (f" ({legend.span_text})" if legend.mode == "absolute" else "")
                               + (f"; {legend.note}" if legend.note else "") + f". {RESEARCH_USE_NOTICE}",
                "Software": "radreview"}
        path.write_bytes(encode(rgb, fmt, text))
        written.append(path)
    return written


def heatmap_path(cam_dir: Path, image_id: str, model: str, label: str, suffix: str = "png") -> Path:
    """``cam_dir/<image>_<model>_<label>.png`` (or ``suffix``), refused unless it lies directly in ``cam_dir``.

    Model cards restrict names to a safe set (card.SAFE_NAME); this is the second fence, for
    names from anywhere else."""
    from radreview.studies.fileaccess import resolved

    name = f"{image_id}_{model}_{label}.{suffix}"
    path = cam_dir / name
    if Path(name).name != name or "/" in name or "\\" in name or resolved(path).parent != resolved(cam_dir):
        raise ValueError(f"heatmap file name {name!r} would leave {cam_dir}")
    return path


def radiographs_of(study, problems: list[tuple[Path, str]]) -> list:  # type: ignore[no-untyped-def]
    """The study's images to predict: not radreview's own heatmap captures, which come back with a
    study retrieved after its results were sent (they would be read as radiographs and their
    findings added to the study's); each left out is listed in ``problems``."""
    kept = []
    for series in study.series:
        if series.description == HEATMAP_SERIES_DESCRIPTION:
            problems.extend((entry.path, "radreview's own heatmap capture (a derived image): not predicted")
                            for entry in series.images)
        else:
            kept.extend(series.images)
    return kept


def predict_paths(
    paths: Sequence[str | Path],
    engine: Engine,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    cam_dir: str | Path | None = None,
    cam_style: OverlayStyle = OverlayStyle(),
    cam_all_labels: bool = False,
    workers: int = 2,
    on_record: Callable[[ImageRecord], None] | None = None,
    cam_format: str = "png",
) -> BatchResult:
    """Index ``paths``, run the chain on every image, aggregate per study.

    ``progress(done, total)`` counts images; ``cancel()`` is checked between batches and stops
    the run with what is done so far (``cancelled`` set). ``on_record(record)`` is called for each
    image as soon as it is done, in index order (``predict`` writes its rows there, so that a crash
    loses at most what is in flight). A file, image or model that fails becomes a problem or a note
    in the result; the rest of the batch carries on.
    """
    from radreview.inference.heatmap_files import CAM_FORMATS
    from radreview.studies import index_paths

    if cam_format not in CAM_FORMATS:
        raise ValueError(f"unknown heatmap format {cam_format!r}; choose one of {', '.join(CAM_FORMATS)}")
    out = BatchResult()
    timer = _Timer(out.seconds, out.cpu_seconds)
    wall_start = time.perf_counter()
    mark = timer.mark()
    index = index_paths(paths, cancel=cancel)
    timer.since("index", mark)
    out.problems.extend((p.path, p.reason) for p in index.problems)
    if getattr(index, "cancelled", False):
        out.cancelled = True
        return out

    records: list[ImageRecord] = []
    entries = []
    for s, study in enumerate(index.studies(), start=1):
        patient_key = next((p.key for p in index.patients if study in p.studies), "")
        for i, entry in enumerate(radiographs_of(study, out.problems), start=1):
            records.append(ImageRecord(f"S{s:05d}-I{i:03d}", f"S{s:05d}", None, entry.path, patient_key,
                                       study.uid, entry.sop_instance_uid, entry.rows, entry.columns))
            entries.append(entry)
    total = len(entries)
    cam_path = Path(cam_dir) if cam_dir else None
    if cam_path:
        cam_path.mkdir(parents=True, exist_ok=True)
    image_ids = [r.image_id for r in records]
    cam_args = (cam_path, cam_style, cam_all_labels, cam_format)
    chunks = [list(range(i, min(i + engine.batch_size, total))) for i in range(0, total, engine.batch_size)]
    in_flight = 2 * max(1, workers)  # chunks queued ahead: bounded memory, no idle worker
    done = 0

    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="predict") as pool:
        pending: deque[tuple[list[int], Future]] = deque()
        feed = iter(chunks)

        def top_up() -> None:
            while len(pending) < in_flight:
                chunk = next(feed, None)
                if chunk is None:
                    return
                pending.append((chunk, pool.submit(_process_chunk, chunk, entries, image_ids, engine, timer, cam_args)))

        top_up()
        while pending:
            if cancel is not None and cancel():
                out.cancelled = True
                for _, future in pending:
                    future.cancel()
                break
            chunk, future = pending.popleft()
            try:
                finished = future.result()
            except Exception as exc:  # noqa: BLE001 - e.g. MemoryError in a worker: these images fail, not the run
                log.warning("a batch of images failed", exc_info=True)
                finished = [(k, None, exc, [], []) for k in chunk]
            for k, result, error, files, notes in finished:
                record = records[k]
                if error is not None:
                    record.error = str(error) or type(error).__name__
                    out.problems.append((record.path, _reason(error, record.path)))
                else:
                    record.result = result
                    out.cam_files.extend(files)
                    out.notes.extend((record.path, reason) for reason in result.errors.values())
                out.notes.extend((record.path, note) for note in notes)
                if on_record is not None:
                    on_record(record)
                done += 1
            top_up()
            if progress is not None:
                progress(done, total)

    out.images = [r for r in records if r.result is not None or r.error]
    out.studies = aggregate_studies((r.study_id, r.result) for r in out.images if r.result is not None)
    out.wall_seconds = time.perf_counter() - wall_start
    return out


def _timed(timer: _Timer, stage: str, function, *args):
    mark = timer.mark()
    try:
        return function(*args)
    finally:
        timer.since(stage, mark)


def _reason(exc: Exception, path: Path) -> str:
    text = str(exc) or type(exc).__name__
    prefix = f"{path}: "
    return text[len(prefix):] if text.startswith(prefix) else text
