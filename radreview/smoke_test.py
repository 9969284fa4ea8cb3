"""``radreview --smoke-test``: prove that an installed or frozen radreview works, end to end.

It runs the checks an installer needs answered on a machine nobody watches (CI runners, a
site's test workstation) and writes the answers to a JSON file, because a windowed build has
no console:

1. ``environment`` — versions of radreview and of what it runs on, ONNX Runtime providers;
   ``imports`` — every radreview module but the training code imports;
2. ``decoders`` — pydicom's pixel decoders (GDCM, pylibjpeg and its plugins, Pillow) each
   decode a synthetic image encoded with RLE, JPEG 2000, JPEG-LS and JPEG lossless, exactly;
   a frozen app that lost a plugin's entry-point metadata or a codec library fails here;
3. ``demo_study`` — the bundled demo studies are indexed, decoded and rendered;
4. ``models`` — every shipped model runs once on each demo image (all its labels, bypassing
   the chain), then the chain runs as the viewer runs it;
5. ``reader_study`` — a reader-study database is created and migrated (Alembic, SQLite);
6. ``window`` — the main window opens (offscreen unless ``QT_QPA_PLATFORM`` says otherwise)
   on the demo study and shows an image.

The exit status is 0 when every check passed, 1 otherwise. :func:`compare_predictions` tells
whether two results (frozen vs. source) agree.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from radreview import RESEARCH_USE_NOTICE, __version__

log = logging.getLogger(__name__)

SCHEMA = "radreview.smoke_test/1"
RESULT_NAME = "smoke-test.json"
# Probabilities of the same model on the same input, frozen vs. source: the same onnxruntime
# and numpy builds give identical numbers; the tolerance only absorbs float printing.
DEFAULT_ATOL = 1e-5
_DISTRIBUTIONS = ("radreview", "onnxruntime", "numpy", "pydicom", "python-gdcm", "pylibjpeg",
                  "pylibjpeg-openjpeg", "pylibjpeg-rle", "pillow", "PySide6-Essentials", "pyqtgraph", "isal")


@dataclass
class Check:
    name: str
    ok: bool = False
    seconds: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)
    error: str = ""


@dataclass
class SmokeContext:
    """What the checks hand on to each other."""

    models_dir: Path
    demo_dir: Path
    provider: str = "cpu"
    displays: dict[str, Any] = field(default_factory=dict)  # demo-relative path -> uint8 display image
    entries: list[Any] = field(default_factory=list)
    predictions: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    chain: dict[str, dict[str, Any]] = field(default_factory=dict)
    engine_provider: str = ""
    screenshot: Path | None = None  # where the window check saves its picture


# -- checks -----------------------------------------------------------------------------------
def check_environment(ctx: SmokeContext) -> dict[str, Any]:
    import onnxruntime

    versions = {}
    for name in _DISTRIBUTIONS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None  # a frozen app without this metadata is worth seeing
    missing = [n for n in ("radreview", "onnxruntime", "pydicom", "pylibjpeg", "pylibjpeg-openjpeg",
                           "pylibjpeg-rle") if versions[n] is None]
    if missing:
        raise RuntimeError(f"package metadata missing for {', '.join(missing)} (plugins are found through it)")
    return {
        "versions": versions,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "frozen": bool(getattr(sys, "frozen", False)),
        "onnxruntime_providers": onnxruntime.get_available_providers(),
        "models_dir": str(ctx.models_dir),
        "demo_dir": str(ctx.demo_dir),
    }


def check_imports(ctx: SmokeContext) -> dict[str, Any]:
    """Import every radreview module except the training code (a frozen app that lost a
    lazily imported module, or carries a broken library, fails here and not in a user's hands)."""
    import importlib
    import pkgutil

    import radreview

    names = sorted(
        m.name for m in pkgutil.walk_packages(radreview.__path__, "radreview.")
        if not m.name.startswith(("radreview.training", "radreview.smoke_test"))
    )
    failures = []
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # ImportError, or an OSError from a library that will not load
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
    if failures:
        raise RuntimeError("; ".join(failures))
    training = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "pytorch_grad_cam"))
    return {"modules": len(names), "torch_loaded": bool(training)}


def _synthetic_dataset(rows: int = 64, cols: int = 48):
    """A 12-bit MONOCHROME2 secondary-capture dataset with a pattern no codec compresses away."""
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    y, x = np.mgrid[0:rows, 0:cols]
    pixels = ((x * 37 + y * 91 + (x * y) % 251) % 4096).astype(np.uint16)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.tobytes()
    return ds, pixels


def gdcm_transcode(source: Path, target: Path, gdcm_syntax: int) -> None:
    """Re-encode a DICOM file in another transfer syntax with GDCM (smoke test and benchmarks)."""
    import gdcm

    reader = gdcm.ImageReader()
    reader.SetFileName(str(source))
    if not reader.Read():
        raise RuntimeError(f"GDCM could not read {source}")
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(gdcm_syntax))
    change.SetInput(reader.GetImage())
    if not change.Change():
        raise RuntimeError(f"GDCM could not encode {target.name}")
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(target))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    if not writer.Write():
        raise RuntimeError(f"GDCM could not write {target}")


def check_decoders(ctx: SmokeContext) -> dict[str, Any]:
    """Encode one image in each compressed syntax and decode it with every available plugin."""
    import gdcm
    import numpy as np
    import pydicom
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEG2000Lossless, JPEGLosslessSV1, JPEGLSLossless, RLELossless

    ds, expected = _synthetic_dataset()
    encoded = {}
    for syntax in (RLELossless, JPEG2000Lossless):
        copied = copy.deepcopy(ds)
        copied.compress(syntax, encoding_plugin="pylibjpeg")
        encoded[syntax] = copied
    with tempfile.TemporaryDirectory(prefix="radreview-smoke-") as tmp:
        source = Path(tmp) / "source.dcm"
        ds.save_as(source, enforce_file_format=True)
        for syntax, gdcm_syntax in ((JPEGLSLossless, gdcm.TransferSyntax.JPEGLSLossless),
                                    (JPEGLosslessSV1, gdcm.TransferSyntax.JPEGLosslessProcess14_1)):
            target = Path(tmp) / f"{syntax.keyword or 'encoded'}.dcm"
            gdcm_transcode(source, target, gdcm_syntax)
            encoded[syntax] = pydicom.dcmread(target)
            # radreview decodes these with gdcm in a child process (studies/isolated.py): in a
            # frozen app that child is the app itself, re-entered through freeze_support().
            from radreview.studies import decode_image, index_paths

            via_child = decode_image(index_paths([target]).images()[0]).pixels
            if not np.array_equal(via_child.astype(np.uint16), expected):
                raise RuntimeError(f"{syntax.name}: decode_image (gdcm in a child process) gives other pixels")
    results: dict[str, dict[str, str]] = {}
    failures = []
    # Plugins that must be present in every build: a missing one means lost metadata or libs.
    required = {RLELossless: {"pylibjpeg"}, JPEG2000Lossless: {"pylibjpeg", "gdcm"},
                JPEGLSLossless: {"gdcm"}, JPEGLosslessSV1: {"gdcm"}}
    for syntax, dataset in encoded.items():
        if dataset.file_meta.TransferSyntaxUID != syntax:
            failures.append(f"{syntax.name}: encoded as {dataset.file_meta.TransferSyntaxUID.name}")
            continue
        decoder = get_decoder(syntax)
        plugins = set(decoder.available_plugins)
        row = results.setdefault(syntax.name, {})
        for plugin in sorted(required[syntax] - plugins):
            row[plugin] = "missing"
            failures.append(f"{syntax.name}: decoder plugin {plugin!r} is not available")
        for plugin in sorted(plugins):
            try:
                array, _ = decoder.as_array(dataset, decoding_plugin=plugin)
            except Exception as exc:  # any plugin failure is a finding, not a crash
                row[plugin] = f"error: {exc}"
                failures.append(f"{syntax.name} via {plugin}: {exc}")
                continue
            same = bool(np.array_equal(array, expected))
            row[plugin] = "exact" if same else "differs"
            if not same:
                failures.append(f"{syntax.name} via {plugin}: decoded pixels differ")
    if failures:
        raise RuntimeError("; ".join(failures))
    return {"decoded": results}


def check_demo_study(ctx: SmokeContext) -> dict[str, Any]:
    from radreview.studies import decode_image, index_paths, render_display

    if not ctx.demo_dir.is_dir():
        raise FileNotFoundError(f"{ctx.demo_dir}: the demo studies are missing")
    index = index_paths([ctx.demo_dir])
    images = index.images()
    if not images:
        raise RuntimeError(f"{ctx.demo_dir}: no images found in the demo studies")
    shapes = {}
    for entry in images:
        key = _relative_key(entry.path, ctx.demo_dir)
        display = render_display(decode_image(entry))
        ctx.displays[key] = display
        ctx.entries.append(entry)
        shapes[key] = list(display.shape)
    problems = [str(p) for p in index.problems]
    if problems:
        raise RuntimeError(f"the demo studies have problems: {'; '.join(problems)}")
    return {"studies": len(index.studies()), "images": len(images), "display_shapes": shapes}


def check_models(ctx: SmokeContext) -> dict[str, Any]:
    import numpy as np

    from radreview.inference.engine import Engine
    from radreview.inference.registry import discover

    catalog = discover([ctx.models_dir])
    if catalog.problems:
        raise RuntimeError("; ".join(str(p) for p in catalog.problems))
    if not catalog.models:
        raise RuntimeError(f"{ctx.models_dir}: no shipped models found")
    if not ctx.displays:
        raise RuntimeError("no demo image to run the models on (the demo_study check failed)")
    engine = Engine(catalog.models, provider=ctx.provider)
    if engine.problems:
        raise RuntimeError("; ".join(str(p) for p in engine.problems))
    ctx.engine_provider = engine.provider
    timings: dict[str, float] = {}
    for model in engine.models:
        key = f"{model.card.name} {model.card.version}"
        per_image = ctx.predictions.setdefault(key, {})
        started = time.perf_counter()
        for image_key, display in ctx.displays.items():
            prepared = engine.prepare(display)
            logits, cam, _features = model.run(prepared.tensors[model.key][None])
            if not np.all(np.isfinite(logits)) or not np.all(np.isfinite(cam)):
                raise RuntimeError(f"{model.file.path}: non-finite output on {image_key}")
            probs = model.probabilities(model.calibrate(logits))[0]
            per_image[image_key] = {label.name: float(probs[label.index]) for label in model.card.labels}
        timings[key] = round((time.perf_counter() - started) / len(ctx.displays), 4)
    for image_key, display in ctx.displays.items():
        result = engine.predict(display, with_cam=True)
        ctx.chain[image_key] = {
            "regions": list(result.regions),
            "labels": {r.key: {"probability": r.probability, "tier": r.tier} for r in result.labels},
        }
    return {
        "models": {f"{m.card.name} {m.card.version}": m.file.path.name for m in engine.models},
        "provider": engine.provider,
        "provider_notes": engine.provider_notes,
        "seconds_per_image": timings,
    }


def check_reader_study_database(ctx: SmokeContext) -> dict[str, Any]:
    """Create a reader-study database (SQLite) and migrate it: Alembic runs its scripts from
    files on disk, which a frozen app must carry."""
    from radreview.readerstudy.db import current_revision, head_revision, open_database

    with tempfile.TemporaryDirectory(prefix="radreview-smoke-") as tmp:
        db = open_database(Path(tmp) / "smoke-study.sqlite")
        try:
            revision, head = current_revision(db), head_revision()
        finally:
            db.close()
    if revision != head:
        raise RuntimeError(f"the study database is at revision {revision}, expected {head}")
    return {"schema_revision": revision}


def check_dicom_results(ctx: SmokeContext) -> dict[str, Any]:
    """AI results as DICOM (radreview.pacs: highdicom's Comprehensive SR and a heatmap secondary
    capture) for the demo hand study, read back with pydicom: the frozen app carries highdicom's
    tables of the standard, trimmed at build time, and this proves they still suffice."""
    import pydicom

    from radreview.inference.batch import predict_paths
    from radreview.inference.engine import Engine
    from radreview.inference.registry import discover
    from radreview.pacs.ai_results import write_study_reports

    engine = Engine(discover([ctx.models_dir]).models, provider=ctx.provider)
    batch = predict_paths([ctx.demo_dir / "DEMO_HAND"], engine, workers=1)
    with tempfile.TemporaryDirectory(prefix="radreview-smoke-") as tmp:
        reports = write_study_reports(batch, tmp, heatmaps=True)
        if reports.problems:
            raise RuntimeError("; ".join(reports.problems))
        kinds = sorted(str(pydicom.dcmread(path).Modality) for path in reports.files)
    if "SR" not in kinds:
        raise RuntimeError(f"no Structured Report was written (wrote {kinds})")
    return {"objects": kinds}


def check_window(ctx: SmokeContext) -> dict[str, Any]:
    """Open the main window on the demo studies, let it load, save a screenshot and close.

    The GUI layer does all the Qt work (``run_viewer`` with its screenshot option); this check
    only judges the picture: the window must have drawn something, not a blank frame.
    """
    import numpy as np
    from PIL import Image

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    scratch = Path(tempfile.mkdtemp(prefix="radreview-smoke-"))
    # Fresh default settings: the user's saved layout cannot change the outcome, and the
    # smoke test never edits their recent-files list.
    from radreview.gui.settings import CONFIG_DIR_ENV

    os.environ[CONFIG_DIR_ENV] = str(scratch / "config")
    from radreview.gui.app import run_viewer

    screenshot = ctx.screenshot or scratch / "window.png"
    screenshot.unlink(missing_ok=True)
    status = run_viewer([ctx.demo_dir], screenshot=screenshot, geometry=(1280, 800))
    if status != 0:
        raise RuntimeError(f"the viewer's event loop ended with status {status}")
    if not screenshot.is_file():
        raise RuntimeError("the main window did not finish loading (no screenshot was saved)")
    with Image.open(screenshot) as image:
        grey = np.asarray(image.convert("L"))
    levels = int(len(np.unique(grey)))
    if levels < 16:  # a blank or single-colour frame: nothing was drawn
        raise RuntimeError(f"the main window looks blank ({levels} grey levels in the screenshot)")
    return {"screenshot": str(screenshot), "size": [int(grey.shape[1]), int(grey.shape[0])],
            "grey_levels": levels, "qt_platform": os.environ.get("QT_QPA_PLATFORM", "")}


CHECKS: tuple[tuple[str, Callable[[SmokeContext], dict[str, Any]]], ...] = (
    ("environment", check_environment),
    ("imports", check_imports),
    ("decoders", check_decoders),
    ("demo_study", check_demo_study),
    ("models", check_models),
    ("reader_study", check_reader_study_database),
    ("dicom_results", check_dicom_results),
    ("window", check_window),
)


# -- running ----------------------------------------------------------------------------------
def _relative_key(path: Path, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return Path(path).name


def default_result_path() -> Path:
    """Where a windowed build writes its result when no ``--smoke-out`` is given."""
    import platformdirs

    return Path(platformdirs.user_log_dir("radreview", appauthor=False)) / RESULT_NAME


def run_smoke_test(
    out: str | Path | None = None,
    *,
    models_dir: str | Path | None = None,
    demo_dir: str | Path | None = None,
    skip: Sequence[str] = (),
    provider: str = "cpu",
) -> dict[str, Any]:
    """Run every check, write the JSON result to ``out`` and return it."""
    from radreview.inference.registry import shipped_models_dir
    from radreview.studies import demo_dir as default_demo_dir

    ctx = SmokeContext(
        models_dir=Path(models_dir) if models_dir else shipped_models_dir(),
        demo_dir=Path(demo_dir) if demo_dir else default_demo_dir(),
        provider=provider,
    )
    path = Path(out) if out else default_result_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    ctx.screenshot = path.with_suffix(".png")  # kept beside the result: CI uploads both
    started = time.perf_counter()
    checks: list[Check] = []
    for name, function in CHECKS:
        if name in skip:
            continue
        check = Check(name)
        t0 = time.perf_counter()
        try:
            check.detail = function(ctx) or {}
            check.ok = True
        except Exception as exc:  # every failure is recorded; the next check still runs
            check.error = f"{type(exc).__name__}: {exc}"
            check.detail = {"traceback": traceback.format_exc(limit=8)}
            log.error("smoke test: %s failed: %s", name, check.error)
        check.seconds = round(time.perf_counter() - t0, 3)
        checks.append(check)
    result = {
        "schema": SCHEMA,
        "ok": all(c.ok for c in checks) and bool(checks),
        "radreview": __version__,
        "notice": RESEARCH_USE_NOTICE,
        "frozen": bool(getattr(sys, "frozen", False)),
        "provider": ctx.engine_provider,
        "seconds": round(time.perf_counter() - started, 3),
        "checks": [asdict(c) for c in checks],
        "predictions": ctx.predictions,
        "chain": ctx.chain,
    }
    path.write_text(json.dumps(result, indent=1, sort_keys=True), encoding="utf-8")
    result["result_file"] = str(path)
    return result


def summary(result: dict[str, Any]) -> str:
    lines = [f"radreview {result['radreview']} smoke test: {'PASSED' if result['ok'] else 'FAILED'}"
             f" in {result['seconds']:.1f} s (frozen: {result['frozen']}, provider: {result['provider'] or '-'})"]
    for check in result["checks"]:
        status = "ok  " if check["ok"] else "FAIL"
        lines.append(f"  {status} {check['name']:<12} {check['seconds']:7.2f} s  {check['error']}")
    if "result_file" in result:
        lines.append(f"  result: {result['result_file']}")
    return "\n".join(lines)


def run_and_report(out: str | Path | None = None, **kwargs: Any) -> int:
    """Run, print a summary (where there is a console) and return the exit status."""
    result = run_smoke_test(out, **kwargs)
    print(summary(result))
    return 0 if result["ok"] else 1


# -- comparing two results (frozen vs. source) ------------------------------------------------
def compare_predictions(a: dict[str, Any], b: dict[str, Any], atol: float = DEFAULT_ATOL) -> list[str]:
    """Differences between the predictions of two smoke-test results; empty when they agree."""
    differences = []
    pa, pb = a.get("predictions", {}), b.get("predictions", {})
    if not pa:
        differences.append("the first result has no predictions")
    for model in sorted(set(pa) | set(pb)):
        if model not in pa or model not in pb:
            differences.append(f"model {model!r} is only in {'the first' if model in pa else 'the second'} result")
            continue
        for image in sorted(set(pa[model]) | set(pb[model])):
            la, lb = pa[model].get(image), pb[model].get(image)
            if la is None or lb is None:
                differences.append(f"{model} / {image}: only in one result")
                continue
            for label in sorted(set(la) | set(lb)):
                va, vb = la.get(label), lb.get(label)
                if va is None or vb is None or abs(va - vb) > atol:
                    differences.append(f"{model} / {image} / {label}: {va} vs {vb}")
    return differences


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m radreview.smoke_test`` (the same as ``radreview --smoke-test``)."""
    parser = argparse.ArgumentParser(prog="python -m radreview.smoke_test", description=__doc__.splitlines()[0])
    parser.add_argument("--out", "--smoke-out", dest="out", help=f"result JSON (default: {default_result_path()})")
    parser.add_argument("--models", help="models folder (default: the shipped models)")
    parser.add_argument("--demo", help="demo studies folder (default: the bundled demo)")
    parser.add_argument("--skip", action="append", default=[], choices=[name for name, _ in CHECKS])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run_and_report(args.out, models_dir=args.models, demo_dir=args.demo, skip=args.skip)


if __name__ == "__main__":
    sys.exit(main())
