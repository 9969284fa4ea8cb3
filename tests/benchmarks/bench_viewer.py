"""Viewer benchmark: first pixels on screen after selecting a 1760x1760 CR, window/level
re-render time, and memory after browsing 200 images versus 20 (no leak).

    QT_QPA_PLATFORM=offscreen .venv/bin/python tests/benchmarks/bench_viewer.py [--images 200]

Figures are printed, with ratios against baselines measured in the same run (decode + render
without any GUI); nothing is asserted. The CR is pydicom-data's RG3_UNCR.dcm (1760x1760,
MONOCHROME1), copied with new UIDs so that every selection is a cache miss; browsing uses real
FracAtlas radiographs (CC BY 4.0, see ../shared/data/fracatlas/README.md).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO_ROOT = Path(__file__).resolve().parents[2]
FRACATLAS_DIR = REPO_ROOT.parent / "shared" / "data" / "fracatlas"


def rss_mb() -> float:
    """Resident memory of this process in MB (Linux /proc; falls back to peak RSS elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def make_cr_copies(folder: Path, count: int) -> list[Path]:
    import data_store
    import pydicom

    source = next(Path(data_store.__file__).parent.rglob("RG3_UNCR.dcm"))
    ds = pydicom.dcmread(source)
    paths = []
    for n in range(count):
        copy = ds.copy()
        copy.SOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=["bench_viewer", str(n)])
        copy.file_meta.MediaStorageSOPInstanceUID = copy.SOPInstanceUID
        copy.InstanceNumber = n + 1
        path = folder / f"cr{n:02d}.dcm"
        copy.save_as(path)
        paths.append(path)
    return paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200, help="images to browse for the memory figure")
    parser.add_argument("--selections", type=int, default=12, help="cold selections of the CR to time")
    args = parser.parse_args()

    sys.path.insert(0, str(REPO_ROOT))
    from PySide6.QtWidgets import QApplication

    from radreview.gui.app import application
    from radreview.gui.main_window import MainWindow
    from radreview.gui.settings import CONFIG_DIR_ENV, ViewerSettings
    from radreview.studies import decode_image, render_display

    tmp = Path(tempfile.mkdtemp(prefix="bench_viewer_"))
    os.environ[CONFIG_DIR_ENV] = str(tmp / "config")
    app = application()
    window = MainWindow(settings=ViewerSettings(), save_on_close=False)
    window.resize(1400, 900)
    window.show()
    app.processEvents()

    def wait(condition, timeout=60.0) -> None:
        deadline = time.perf_counter() + timeout
        while not condition():
            app.processEvents()
            if time.perf_counter() > deadline:
                raise TimeoutError("the viewer did not finish in time")
            time.sleep(0.0005)

    # --- first pixels of a 1760x1760 CR after selection ------------------------------------------
    crs = make_cr_copies(tmp, args.selections + 1)
    window.open_paths([tmp])
    wait(lambda: not window._index_tasks and not window._pane_tasks)
    entries = [e for e in window.index.images() if e.path in set(crs)]
    baseline, on_screen, cached = [], [], []
    for entry in entries[1 : args.selections + 1]:
        start = time.perf_counter()
        render_display(decode_image(entry))
        baseline.append((time.perf_counter() - start) * 1000)
    window.cache.clear()
    view = window.active_view()
    for entry in entries[1 : args.selections + 1]:
        wait(lambda: window._thumbnail_task is None)  # measure the selection, not thumbnails
        start = time.perf_counter()
        window.show_entry(entry)
        wait(lambda: view.entry is entry and view.decoded is not None)
        view.viewport().repaint()  # synchronous paint: the pixels are on screen now
        on_screen.append((time.perf_counter() - start) * 1000)
    recent = entries[args.selections - 1 : args.selections + 1]
    for n in range(6):  # back and forth between the last two: served by the LRU cache
        entry = recent[n % 2]
        start = time.perf_counter()
        window.show_entry(entry)
        wait(lambda: view.entry is entry and view.decoded is not None)
        view.viewport().repaint()
        cached.append((time.perf_counter() - start) * 1000)
    shape = view.decoded.shape

    # --- window/level drag: one re-render ----------------------------------------------------------
    renders, previews = [], []
    for step in range(30):
        view.window = view.decoded.windows[0].with_center_width(500 + step * 5, 900 + step * 7)
        start = time.perf_counter()
        view.render_now()
        view.viewport().repaint()
        renders.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        view.render_preview()  # what a right-drag renders while the mouse moves
        view.viewport().repaint()
        previews.append((time.perf_counter() - start) * 1000)

    print(f"first pixels on screen after selecting a {shape[1]}x{shape[0]} CR (cold, {len(on_screen)} selections):")
    print(f"  median {statistics.median(on_screen):.1f} ms, max {max(on_screen):.1f} ms  (target <= 150 ms); "
          f"all: {', '.join(f'{t:.0f}' for t in on_screen)} ms (the first includes warm-up)")
    print(f"  baseline decode+render without GUI: median {statistics.median(baseline):.1f} ms; "
          f"GUI overhead ratio {statistics.median(on_screen) / statistics.median(baseline):.2f}x")
    print(f"  from the decoded-image cache: median {statistics.median(cached):.1f} ms")
    print(f"window/level re-render + paint: median {statistics.median(renders):.1f} ms, max {max(renders):.1f} ms "
          f"({1000 / statistics.median(renders):.0f} frames/s possible)")
    print(f"  during a right-drag (preview 1/{view.preview_factor()} at {view.zoom_percent():.0f}% zoom): "
          f"median {statistics.median(previews):.1f} ms ({1000 / statistics.median(previews):.0f} frames/s); "
          f"ratio to full render {statistics.median(previews) / statistics.median(renders):.2f}")

    # --- memory: browsing 20 vs N images -------------------------------------------------------------
    if not (FRACATLAS_DIR / "images").exists():
        print(f"FracAtlas not found at {FRACATLAS_DIR}: memory figure skipped")
        return 0
    window.close_all()
    files = sorted((FRACATLAS_DIR / "images").rglob("*.jpg"))[: args.images]
    window.open_paths(files)
    wait(lambda: not window._index_tasks and not window._pane_tasks, timeout=300)
    images = window.index.images()
    memory, cache_mb = {}, {}
    start = time.perf_counter()
    for n, entry in enumerate(images, start=1):
        window.show_entry(entry)
        wait(lambda: not window._pane_tasks)
        view.viewport().repaint()
        if n in (20, len(images) // 2, len(images)):
            wait(lambda: not window.is_busy(), timeout=120)
            gc.collect()
            app.processEvents()
            memory[n] = rss_mb()
            cache_mb[n] = window.cache.nbytes / 2**20
    elapsed = time.perf_counter() - start
    first, last = memory[20], memory[len(images)]
    print(f"memory after browsing 20 images: {first:.0f} MB; after {len(images)}: {last:.0f} MB; "
          f"difference {last - first:+.0f} MB (target within 100 MB)")
    middle = len(images) // 2
    print(f"  after {middle}: {memory[middle]:.0f} MB (growth that levels off is allocator reuse, steady growth a leak)")
    print(f"  without the bounded decoded-image cache: {first - cache_mb[20]:.0f} MB -> "
          f"{last - cache_mb[len(images)]:.0f} MB ({(last - cache_mb[len(images)]) - (first - cache_mb[20]):+.0f} MB)")
    print(f"  decoded-image cache holds {len(window.cache)} frames, {window.cache.nbytes / 2**20:.0f} MB "
          f"(budget {window.settings.image_cache_mb} MB); browsing took {elapsed / len(images) * 1000:.0f} ms/image")
    window.close()
    window.deleteLater()
    QApplication.processEvents()
    return 0


if __name__ == "__main__":
    sys.exit(main())
