"""Benchmark of radreview's inference: int8 and float32 end to end, their model-only ceilings, torch
eager, heatmap files, memory, viewer latency and (when there is one) the GPU.

    .venv/bin/python tests/benchmarks/bench_predict.py [--images 300] [--models DIR] [--skip-torch] [--skip-gui]

Prints figures and ratios measured in the same run (no asserts):
0. The machine: CPU, cores, load average, onnxruntime and its providers, the models (both precisions).
1. Model only, per precision: tensors made in advance, one session shared by the workers as
   ``radreview predict`` runs it (single-threaded sessions, one per core worker): CPU ms per image
   at batch 1/2/4/8 and the ceiling those allow on this machine's cores; then onnxruntime session
   options (graph optimisation level, intra-op threads, arena, spinning) for int8.
2. ``radreview predict`` end to end (index, decode, display pipeline, preprocessing, the chain with
   CAMs, CSV out) over FracAtlas JPEGs and pydicom-data / deid-data DICOMs, int8 and float32 runs
   interleaved: radiographs/s, CPU ms per radiograph, where the CPU time goes (per stage), and the
   ratios int8 : float32 and end to end : model only.
3. ``--cam-dir`` (PNG, and JPEG): rate and its cost against plain predict in the same run.
4. Torch eager (one image at a time, same architecture, CAM from the same pass): speed-up of each.
5. Memory: models loaded (+ first run), RSS growth over 500 consecutive images (fresh process).
6. The viewer (offscreen): image shown -> AI panel and heatmap filled; longest event-loop stall.
7. CUDA / TensorRT, when this onnxruntime build and machine offer them: images/s at batch 1/16/64
   model only and end to end, and the share of the end-to-end time spent decoding.

The machine may be shared: the CPU-time figures (``time.process_time``, ``time.thread_time``) do
not depend on other processes' load, the wall rates do; each line says which it is.
Models: ``models/*.onnx`` (the float32 file and its ``_int8`` twin), else stand-ins of the shipped
architecture (EfficientNet-Lite0 at 320 px, exported by radreview's exporter and quantised by
radreview's quantiser on FracAtlas images, without the parity gate: random heads).
Data attribution: FracAtlas (Abedeen et al. 2023), CC BY 4.0.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
FRACATLAS = REPO.parent / "shared" / "data" / "fracatlas" / "images"
sys.path.insert(0, str(REPO))
PRECISIONS = ("int8", "float32")

from radreview.machine import cpu_name  # noqa: E402 - after the repository is on the path


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load_text() -> str:
    return f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"


# -- inputs ----------------------------------------------------------------------------------
def make_inputs(folder: Path, n_images: int, dicom_share: float = 0.1) -> list[Path]:
    """FracAtlas JPEGs plus DICOM copies (CR MONOCHROME1 and DX) given their own UIDs."""
    import data_store
    import deid_data
    import pydicom

    n_dicom = max(2, int(n_images * dicom_share))
    jpegs = sorted(FRACATLAS.rglob("*.jpg"))[: n_images - n_dicom]
    for path in jpegs:
        os.symlink(path, folder / path.name)
    sources = [next(Path(data_store.__file__).parent.rglob("RG3_UNCR.dcm")),
               next(Path(data_store.__file__).parent.rglob("RG1_UNCR.dcm")),
               Path(deid_data.__file__).parent / "data" / "animals" / "cat.dcm"]
    for k in range(n_dicom):
        ds = pydicom.dcmread(sources[k % len(sources)])
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.StudyInstanceUID = pydicom.uid.generate_uid()
        ds.save_as(folder / f"dicom_{k:04d}.dcm")
    return sorted(folder.iterdir())


# -- models ----------------------------------------------------------------------------------
STAND_IN_LABELS = [("hand", "region"), ("leg", "region"), ("hip", "region"), ("shoulder", "region"),
                   ("fractured", "fracture"), ("hardware", "hardware")]


def stand_in_models(folder: Path, size: int = 320) -> Path:
    """An EfficientNet-Lite0 file exported as `radreview export` does (random heads) and its int8 twin."""
    import dataclasses

    import onnx
    import torch

    from radreview.inference.card import card_from_onnx_model, write_card
    from radreview.inference.toy import toy_card
    from radreview.training.backbones import build_backbone
    from radreview.training.export import export_onnx_graph
    from radreview.training.image_cache import letterboxed_uint8
    from radreview.training.model import MultiLabelClassifier
    from radreview.training.quantize import quantize_graph

    torch.manual_seed(0)
    model = MultiLabelClassifier(build_backbone("efficientnet_lite0", architecture_only=True), len(STAND_IN_LABELS)).eval()
    float_path, int8_path = folder / "stand_in.onnx", folder / "stand_in_int8.onnx"
    export_onnx_graph(model, size, size, float_path)
    card = write_card(float_path, toy_card("stand_in", STAND_IN_LABELS, size=size))
    pixels = np.stack([letterboxed_uint8(p, size, size) for p in sorted(FRACATLAS.rglob("*.jpg"))[::40][:64]])
    kept = quantize_graph(float_path, int8_path, pixels, card)
    write_card(int8_path, dataclasses.replace(card, precision="int8", quantization={
        "float32_sha256": card.weights_sha256, "kept_float": kept,
        "calibration_set": {"split": "FracAtlas sample", "count": len(pixels)}}))
    card_from_onnx_model(onnx.load(str(int8_path)), int8_path)
    return folder


def models_by_precision(model_dir: Path) -> dict[str, list]:
    from radreview.inference.registry import choose_precision, discover

    catalog = discover([model_dir])
    out = {}
    for precision in PRECISIONS:
        chosen, _ = choose_precision(catalog.available, precision)
        if chosen and all(m.card.precision == precision for m in chosen):
            out[precision] = chosen
    return out


def torch_model_like(card):
    """The same architecture in torch for the eager baseline (the exported graph's twin)."""
    import torch

    from radreview.training.backbones import build_backbone
    from radreview.training.model import MultiLabelClassifier

    torch.manual_seed(0)
    backbone = (card.architecture.split() or ["efficientnet_lite0"])[0]  # "<backbone> + global average pooling..."
    try:
        layers = build_backbone(backbone, architecture_only=True)
    except Exception:  # a card from elsewhere: fall back to the default backbone
        layers = build_backbone("efficientnet_lite0", architecture_only=True)
    return MultiLabelClassifier(layers, len(card.labels)).eval()


# -- 1. model only ------------------------------------------------------------------------------
def sample_tensors(paths: list[Path], card, n: int = 8) -> np.ndarray:
    from radreview.inference.preprocess import prepare
    from radreview.studies import decode_image, index_paths, render_display

    entries = index_paths([p for p in paths if p.suffix == ".jpg"][:n]).images()
    return np.stack([prepare(render_display(decode_image(e)), card.input)[0] for e in entries])


def model_only(session, tensors: np.ndarray, batch: int, workers: int, seconds: float = 3.0) -> tuple[float, float]:
    """(wall images/s, CPU ms per image) of ``workers`` threads calling one session with ``batch`` images."""
    x = np.ascontiguousarray(np.resize(tensors, (batch, *tensors.shape[1:])))
    session.run(None, {"image": x})
    counts = [0] * workers
    stop = time.perf_counter() + seconds

    def loop(k: int) -> None:
        while time.perf_counter() < stop:
            session.run(None, {"image": x})
            counts[k] += batch

    threads = [threading.Thread(target=loop, args=(k,)) for k in range(workers)]
    start, cpu = time.perf_counter(), time.process_time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    done = sum(counts)
    return done / wall, 1000 * cpu / max(1, done)


def custom_session(path: Path, threads: int = 1, level: str = "all", arena: bool = True, spinning: bool = False):
    import onnxruntime as ort

    levels = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    options = ort.SessionOptions()
    options.graph_optimization_level = levels[level]
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.enable_cpu_mem_arena = arena
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def bench_model_only(models: dict[str, list], paths: list[Path], workers: int) -> dict[str, float]:
    from radreview.inference.sessions import create_session

    cores = os.cpu_count() or 1
    ceilings: dict[str, float] = {}
    print(f"1. model only (tensors made in advance; {workers} worker threads sharing one single-threaded session, "
          f"as predict runs it); {load_text()}")
    for precision, files in models.items():
        model = files[0]
        tensors = sample_tensors(paths, model.card)
        session, _ = create_session(model.path, "cpu", threads=1)
        figures = {b: model_only(session, tensors, b, workers) for b in (1, 2, 4, 8)}
        best = min(figures, key=lambda b: figures[b][1])
        ceilings[precision] = 1000 * cores / figures[best][1]
        print(f"  {precision:<7} CPU ms per image at batch " + ", ".join(f"{b}: {ms:.1f}" for b, (_, ms) in figures.items())
              + f" -> ceiling {ceilings[precision]:.0f} images/s on {cores} idle cores (batch {best}); wall now "
              + ", ".join(f"{r:.1f}/s" for r, _ in figures.values()))
    if len(ceilings) == 2:
        print(f"  int8 : float32 model only = {ceilings['int8'] / ceilings['float32']:.2f}x (CPU time)")
    precision = "int8" if "int8" in models else next(iter(models))
    model = models[precision][0]
    tensors = sample_tensors(paths, model.card)
    batch = 2
    print(f"  session options, {precision}, batch {batch} (CPU ms per image; wall images/s):")
    variants = [("default: all optimisations, 1 thread x workers, arena, no spinning", {}, workers),
                ("graph optimisation basic", {"level": "basic"}, workers),
                ("graph optimisation extended", {"level": "extended"}, workers),
                ("no memory arena", {"arena": False}, workers),
                ("spinning threads", {"spinning": True}, workers),
                (f"one worker, {cores} intra-op threads", {"threads": cores}, 1),
                (f"one worker, {cores} intra-op threads, spinning", {"threads": cores, "spinning": True}, 1)]
    for name, options, n_workers in variants:
        rate, ms = model_only(custom_session(model.path, **options), tensors, batch, n_workers)
        print(f"    {name:<58} {ms:6.1f} ms  {rate:6.1f}/s")
    return ceilings


# -- 2. predict end to end ---------------------------------------------------------------------
def bench_predict(paths: list[Path], model_files: list, provider: str, cam_dir: Path | None, batch: int,
                  workers: int, threads: int | None = 1, cam_format: str = "png") -> tuple[float, dict]:
    """As ``radreview predict`` runs: ``threads`` per session (1 by default), ``workers`` workers."""
    from radreview.inference.batch import predict_paths
    from radreview.inference.engine import Engine
    from radreview.inference.results_io import write_csv

    engine = Engine(model_files, provider=provider, batch_size=batch or None, threads=threads)
    if cam_dir is not None:
        shutil.rmtree(cam_dir, ignore_errors=True)
    start = time.perf_counter()
    cpu_start = time.process_time()  # this process's CPU time: independent of other processes' load
    result = predict_paths(paths, engine, cam_dir=cam_dir, workers=workers, cam_format=cam_format)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        write_csv(Path(tmp) / "results.csv", result, engine)
        result.seconds["write"] += time.perf_counter() - t
    wall = time.perf_counter() - start
    done = sum(1 for r in result.images if r.result is not None)
    cpu = time.process_time() - cpu_start
    return done / wall, {"wall": wall, "done": done, "cpu_ms": 1000 * cpu / max(1, done),
                         "stages": result.seconds, "cpu_stages": result.cpu_seconds, "provider": engine.provider,
                         "batch": engine.batch_size, "problems": len(result.problems), "cams": len(result.cam_files),
                         "cam_bytes": sum(p.stat().st_size for p in result.cam_files)}


def print_stages(info: dict) -> None:
    cpu = info["cpu_stages"]
    total = info["cpu_ms"] * info["done"] / 1000
    shares = ", ".join(f"{k} {1000 * v / info['done']:.1f} ms ({100 * v / total:.0f}%)" for k, v in cpu.items() if v > 0)
    rest = total - sum(cpu.values())
    print(f"    CPU per radiograph by stage: {shares}, other (index, collecting, CSV, Python) "
          f"{1000 * rest / info['done']:.1f} ms ({100 * rest / total:.0f}%)")


def median_run(runs: list[tuple[float, dict]]) -> tuple[float, dict]:
    return sorted(runs, key=lambda r: r[1]["cpu_ms"])[len(runs) // 2]


def bench_end_to_end(models: dict[str, list], paths: list[Path], args, ceilings: dict[str, float]) -> dict[str, float]:
    cores = os.cpu_count() or 2
    print(f"2. radreview predict end to end (CSV out), {args.workers} workers; {load_text()}")
    for files in models.values():
        bench_predict(paths[:16], files, "cpu", None, args.batch_size, args.workers)  # warm-up (file cache)
    runs: dict[str, list] = {p: [] for p in models}
    for _ in range(args.repeats):  # interleaved, so that other processes' load hits both alike
        for precision, files in models.items():
            runs[precision].append(bench_predict(paths, files, "cpu", None, args.batch_size, args.workers))
    cpu_rate: dict[str, float] = {}
    for precision, results in runs.items():
        rate, info = median_run(results)
        cpu_rate[precision] = 1000 * cores / info["cpu_ms"]
        print(f"  {precision:<7} {info['cpu_ms']:.1f} ms CPU per radiograph -> {cpu_rate[precision]:.1f} radiographs/s "
              f"on {cores} idle cores (aim >= 75, goal 100); wall now {rate:.1f}/s (runs: "
              + ", ".join(f"{r:.1f}" for r, _ in results) + f"); batch {info['batch']}, {info['done']} images")
        print_stages(info)
        if precision in ceilings:
            print(f"    end to end : model-only ceiling = {cpu_rate[precision] / ceilings[precision]:.2f}")
    if len(cpu_rate) == 2:
        print(f"  int8 : float32 end to end = {cpu_rate['int8'] / cpu_rate['float32']:.2f}x (CPU time)")
    jpegs = [p for p in paths if p.suffix == ".jpg"]
    for precision, files in models.items():  # the DICOMs' share: the same run without them
        _, info = bench_predict(jpegs, files, "cpu", None, args.batch_size, args.workers)
        print(f"  {precision:<7} JPEGs only ({len(jpegs)}): {info['cpu_ms']:.1f} ms CPU per radiograph -> "
              f"{1000 * cores / info['cpu_ms']:.1f}/s on {cores} idle cores; decode "
              f"{1000 * info['cpu_stages']['decode'] / info['done']:.1f} ms")
    return cpu_rate


def bench_cams(models: dict[str, list], paths: list[Path], work: Path, args) -> None:
    precision = "int8" if "int8" in models else next(iter(models))
    files = models[precision]
    print(f"3. --cam-dir ({precision}; heatmap files for the findings whose map the viewer draws at the 'likely' gate); {load_text()}")
    plain = median_run([bench_predict(paths, files, "cpu", None, args.batch_size, args.workers)
                        for _ in range(max(1, args.repeats - 1))])
    for fmt in ("png", "jpeg"):
        rate, info = median_run([bench_predict(paths, files, "cpu", work / "cams", args.batch_size, args.workers,
                                               cam_format=fmt) for _ in range(max(1, args.repeats - 1))])
        ratio = plain[1]["cpu_ms"] / info["cpu_ms"]
        per_file = 1000 * info["cpu_stages"]["cam"] / max(1, info["cams"])
        print(f"  {fmt}: {info['cams']} files ({info['cam_bytes'] / max(1, info['cams']) / 1024:.0f} KB each), "
              f"{per_file:.1f} ms CPU per file; {info['cpu_ms']:.1f} vs {plain[1]['cpu_ms']:.1f} ms CPU per radiograph "
              f"-> {ratio:.2f}x of plain predict (aim >= 0.7); wall now {rate:.1f} vs {plain[0]:.1f}/s")
        print_stages(info)


# -- 4. torch eager --------------------------------------------------------------------------
def bench_torch(paths: list[Path], cards: list, gradcam: bool = False) -> tuple[float, float]:
    """(wall images/s, CPU ms per image) of torch eager, one image at a time. ``gradcam=False``: the CAM from the
    same forward pass (the exported graph's computation, the strictest baseline); ``True``: the grad-cam
    package's Grad-CAM per label, as done by hand."""
    import torch

    from radreview.inference.preprocess import letterbox, normalise, to_display_gray
    from radreview.studies import decode_image, index_paths, render_display

    models = [(card, torch_model_like(card)) for card in cards]
    cams = {}
    if gradcam:
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        cams = {card.name: GradCAM(model=model, target_layers=[model.backbone.stages[-1]]) for card, model in models}
    start, cpu = time.perf_counter(), time.process_time()
    for path in paths:  # by hand: one file, one image, one model after another
        entry = index_paths([path]).images()[0]
        gray = to_display_gray(render_display(decode_image(entry)))
        for card, model in models:
            x = torch.from_numpy(
                normalise(letterbox(gray, card.input.height, card.input.width), card.input.mean, card.input.std))[None]
            if gradcam:
                with torch.no_grad():
                    torch.sigmoid(model(x)).numpy()
                for label in card.labels:
                    cams[card.name](input_tensor=x, targets=[ClassifierOutputTarget(label.index)])
            else:
                with torch.no_grad():
                    logits, cam = model.forward_with_cam(x)
                    torch.sigmoid(logits).numpy()
                    cam.numpy()
    return len(paths) / (time.perf_counter() - start), 1000 * (time.process_time() - cpu) / len(paths)


def bench_torch_section(models: dict[str, list], paths: list[Path], args) -> None:
    try:
        import torch
    except ImportError:
        print("4. torch eager baseline: skipped (torch not installed)")
        return
    cores = os.cpu_count() or 2
    subset = paths[:: max(1, len(paths) // args.torch_images)][: args.torch_images]
    cards = [m.card for m in next(iter(models.values()))]
    threads = torch.get_num_threads()
    # one intra-op thread: its CPU time is the work itself (torch's OpenMP pool spins while waiting,
    # which a loaded machine turns into CPU time); the default pool for its wall rate
    torch.set_num_threads(1)
    _, eager_ms = bench_torch(subset, cards)
    torch.set_num_threads(threads)
    eager_rate, eager_ms_pool = bench_torch(subset, cards)
    print(f"4. torch eager, one image at a time, same architecture, CAM from the same pass ({len(subset)} images): "
          f"{eager_ms:.1f} ms CPU per image on one thread -> {1000 * cores / eager_ms:.1f}/s on {cores} idle cores; "
          f"with its {threads}-thread pool {eager_ms_pool:.1f} ms CPU, wall now {eager_rate:.1f}/s; {load_text()}")
    for precision, files in models.items():
        rate, info = median_run([bench_predict(subset, files, "cpu", None, args.batch_size, args.workers)
                                 for _ in range(3)])
        print(f"  radreview predict {precision} on the same images: {info['cpu_ms']:.1f} ms CPU per image -> "
              f"{eager_ms / info['cpu_ms']:.1f}x torch eager in CPU time (aim >= 5x); wall {rate / eager_rate:.1f}x")
    try:
        by_hand, by_hand_ms = bench_torch(subset[:10], cards, gradcam=True)
    except ImportError:
        print("   (grad-cam package missing: no Grad-CAM baseline)")
    else:
        print(f"   torch eager + the grad-cam package's Grad-CAM per label, by hand ({min(10, len(subset))} images): "
              f"{by_hand_ms:.0f} ms CPU per image")


# -- 5. memory -------------------------------------------------------------------------------
def bench_memory(paths: list[Path], model_dir: Path, n: int) -> None:
    from radreview.inference.engine import Engine
    from radreview.inference.registry import discover
    from radreview.studies import decode_image, index_paths, render_display

    import onnxruntime  # noqa: F401 - the library itself is not the models' cost

    gc.collect()
    before = rss_mb()
    catalog = discover([model_dir])
    engine = Engine(catalog.models, provider="cpu", batch_size=1)
    engine.predict(np.zeros((512, 512), np.uint8))  # first run allocates the arenas
    loaded = rss_mb()
    print(f"  memory: loading {', '.join(f'{m.card.name} ({m.card.precision})' for m in engine.models)} (+ first run) "
          f"adds {loaded - before:.0f} MB (target <= 300 MB)")
    entries = index_paths(paths[: min(len(paths), 100)]).images()
    displays = [render_display(decode_image(e)) for e in entries[:50]]
    samples = []
    for i in range(n):
        engine.predict(displays[i % len(displays)])  # the viewer's call, one image at a time
        if i in (49, n // 2, n - 1):
            gc.collect()
            samples.append((i + 1, rss_mb()))
    growth = samples[-1][1] - samples[0][1]
    print(f"  memory over {n} consecutive images: " + ", ".join(f"after {k}: {v:.0f} MB" for k, v in samples)
          + f" -> growth {growth:+.1f} MB after warm-up")


# -- 6. viewer latency -----------------------------------------------------------------------
def bench_viewer(paths: list[Path], model_dir: Path, n: int) -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ["RADREVIEW_CONFIG_DIR"] = tempfile.mkdtemp()
    from PySide6.QtCore import QElapsedTimer, QTimer

    from radreview.gui.ai_panel import install_ai_panel
    from radreview.gui.ai_settings import AiSettings
    from radreview.gui.app import application
    from radreview.gui.main_window import MainWindow
    from radreview.gui.settings import ViewerSettings

    app = application()
    window = MainWindow(settings=ViewerSettings(), save_on_close=False)
    panel = getattr(window, "ai_panel", None) or install_ai_panel(window, save_settings=False)
    panel.save_settings = False
    panel.apply_settings(AiSettings(models_dir=str(model_dir)))
    window.resize(1400, 900)
    window.show()
    while panel.state is None:
        app.processEvents()
        time.sleep(0.005)
    print(f"  viewer models: {', '.join(f'{m.card.name} ({m.card.precision})' for m in panel.state.engine.models)}")

    # Timer probe: the longest gap between 2 ms ticks is the longest event-loop stall.
    clock = QElapsedTimer()
    clock.start()
    gaps: list[float] = []
    last = [clock.nsecsElapsed()]
    measuring = [False]

    def tick() -> None:
        now = clock.nsecsElapsed()
        if measuring[0]:
            gaps.append((now - last[0]) / 1e6)
        last[0] = now

    probe = QTimer()
    probe.setInterval(2)
    probe.timeout.connect(tick)
    probe.start()

    window.open_paths([str(p) for p in paths[:n]])
    deadline = time.monotonic() + 60
    while window.current is None and time.monotonic() < deadline:
        app.processEvents()
    entries = window.index.images()[:n]

    def wait_for_results(start_action) -> float | None:
        """Run ``start_action``, pump events until the panel is filled and painted; latency in ms."""
        done: list[int] = []
        panel.results_shown.connect(lambda _r: done.append(1))
        measuring[0] = True
        last[0] = clock.nsecsElapsed()
        start_action()
        t_end = time.monotonic() + 30
        while not done and time.monotonic() < t_end:
            app.processEvents()
            time.sleep(0.0005)
        for _ in range(10):  # let the overlay paint
            app.processEvents()
            time.sleep(0.001)
        measuring[0] = False
        panel.results_shown.disconnect()
        return (panel.filled_at - panel.shown_at) * 1000 if done else None

    wait_for_results(lambda: window.show_entry(entries[0]))  # warm-up: first runs allocate
    # Baseline in the same run: the idle event loop's gaps (what the OS scheduler and other
    # processes on this machine cost, with no inference running).
    gaps.clear()
    measuring[0] = True
    last[0] = clock.nsecsElapsed()
    idle_end = time.monotonic() + 3.0
    while time.monotonic() < idle_end:
        app.processEvents()
        time.sleep(0.0005)
    measuring[0] = False
    idle_gaps = list(gaps)
    full, full_gaps, only, only_gaps = [], [], [], []
    for entry in entries[1:]:
        # (a) a user moving to the next image: the viewer decodes and paints it, then the AI runs
        gaps.clear()
        latency = wait_for_results(lambda e=entry: window.show_entry(e))
        if latency is not None:
            full.append(latency)
            full_gaps.extend(gaps)
        # (b) the same image already on screen, results not cached: inference alone
        panel.controller.cache.clear()
        view = window.active_view()
        gaps.clear()
        latency = wait_for_results(lambda v=view: panel.on_image_changed(v.entry, v.decoded))
        if latency is not None:
            only.append(latency)
            only_gaps.extend(gaps)
    probe.stop()
    window.close()
    if idle_gaps:
        print(f"  viewer, idle event loop (baseline, 3 s, no inference): longest gap {max(idle_gaps):.1f} ms, "
              f"p99 {np.percentile(idle_gaps, 99):.1f} ms")
    for name, lat, gap in (("next image (decode + paint + AI)", full, full_gaps),
                           ("image on screen, AI only", only, only_gaps)):
        if not lat:
            continue
        lat_a = np.array(lat)
        print(f"  viewer, {name}: shown -> AI panel + heatmap filled over {len(lat_a)} images: median "
              f"{np.median(lat_a):.0f} ms, p90 {np.percentile(lat_a, 90):.0f} ms, max {lat_a.max():.0f} ms "
              f"(target <= 300 ms); longest event-loop stall {max(gap):.1f} ms, p99 gap "
              f"{np.percentile(gap, 99):.1f} ms (target <= 50 ms)")


# -- 7. GPU ------------------------------------------------------------------------------------
def bench_gpu(models: dict[str, list], paths: list[Path], workers: int) -> None:
    import onnxruntime as ort

    from radreview.inference.sessions import available_providers

    offered = ort.get_available_providers()
    accelerators = [p for p in ("CUDAExecutionProvider", "TensorrtExecutionProvider") if p in offered]
    if not accelerators:
        print(f"7. GPU: onnxruntime offers no CUDA/TensorRT provider here ({', '.join(offered)}): no GPU figures")
        return
    print(f"7. GPU providers: {', '.join(accelerators)}")
    for precision, files in models.items():
        model = files[0]
        tensors = sample_tensors(paths, model.card)
        for provider in accelerators:
            try:
                session = ort.InferenceSession(str(model.path), providers=[provider, "CPUExecutionProvider"])
            except Exception as exc:  # a provider library that fails to load
                print(f"  {precision} {provider}: could not start ({str(exc).splitlines()[0]})")
                continue
            rates = {b: model_only(session, tensors, b, 1)[0] for b in (1, 16, 64)}
            print(f"  {precision} {provider} model only: " + ", ".join(f"batch {b}: {r:.0f} images/s" for b, r in rates.items()))
        if "cuda" in available_providers():
            for batch in (1, 16, 64):
                rate, info = bench_predict(paths, files, "cuda", None, batch, max(workers, os.cpu_count() or 2))
                decode = info["cpu_stages"]["decode"] + info["cpu_stages"]["preprocess"]
                busy = sum(info["cpu_stages"].values())
                print(f"  {precision} predict on {info['provider']} batch {batch}: {rate:.1f} radiographs/s end to end; "
                      f"decode + preprocessing {100 * decode / max(busy, 1e-9):.0f}% of the workers' CPU time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--models", type=Path, help="models folder (default: models/ or stand-ins)")
    parser.add_argument("--batch-size", type=int, default=0, help="0: the engine's default for the provider")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs of each configuration")
    parser.add_argument("--torch-images", type=int, default=40)
    parser.add_argument("--memory-images", type=int, default=500)
    parser.add_argument("--viewer-images", type=int, default=20)
    parser.add_argument("--skip-torch", action="store_true")
    parser.add_argument("--skip-gui", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--memory-only", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--memory-inputs", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_only:
        bench_memory(sorted(args.memory_inputs.iterdir()), args.memory_only, args.memory_images)
        return

    import onnxruntime as ort

    work = Path(tempfile.mkdtemp(prefix="bench_predict_"))
    try:
        shipped = REPO / "models"
        model_dir = args.models or (shipped if any(shipped.glob("*.onnx")) else None)
        if model_dir is None:
            print("no shipped models: exporting and quantising an EfficientNet-Lite0 stand-in at 320 px")
            (work / "models").mkdir()
            model_dir = stand_in_models(work / "models")
        models = models_by_precision(model_dir)
        print(f"0. machine: {cpu_name()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}; "
              f"Python {platform.python_version()}, onnxruntime {ort.__version__} ({', '.join(ort.get_available_providers())}); "
              f"{load_text()}")
        for precision, files in models.items():
            print(f"   {precision}: " + ", ".join(f"{m.path.name} ({m.card.name} {m.card.version}, {m.card.input.height} px, "
                                                 f"{len(m.card.labels)} labels, {m.path.stat().st_size / 1e6:.1f} MB)" for m in files))
        if not models:
            print(f"no usable models in {model_dir}")
            return
        (work / "inputs").mkdir()
        paths = make_inputs(work / "inputs", args.images)
        n_dicom = sum(1 for p in paths if p.suffix == ".dcm")
        print(f"   inputs: {len(paths)} files ({len(paths) - n_dicom} FracAtlas JPEG, {n_dicom} DICOM: "
              "1760x1760 CR, 1955x1841 CR, 2614x3072 DX)")

        ceilings = bench_model_only(models, paths, args.workers)
        bench_end_to_end(models, paths, args, ceilings)
        bench_cams(models, paths, work, args)
        if not args.skip_torch:
            bench_torch_section(models, paths, args)
        if not args.skip_memory:
            print("5. memory (in a fresh process, so that the baseline holds no model)", flush=True)
            import subprocess

            subprocess.run([sys.executable, __file__, "--memory-only", str(model_dir), "--memory-images",
                            str(args.memory_images), "--memory-inputs", str(work / "inputs")], check=False)
        if not args.skip_gui:
            print(f"6. viewer; {load_text()}")
            bench_viewer([p for p in paths if p.suffix == ".jpg"][: args.viewer_images - 2]
                         + [p for p in paths if p.suffix == ".dcm"][:2], model_dir, args.viewer_images)
        bench_gpu(models, paths, args.workers)
        print(f"done; {load_text()}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
