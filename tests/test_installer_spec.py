"""The PyInstaller spec and the packaging scripts: what goes in, what stays out, how signing is decided."""

from __future__ import annotations

import ast
import base64
import importlib
import plistlib
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT

INSTALLER = REPO_ROOT / "installer"
SPEC = INSTALLER / "radreview.spec"


@pytest.fixture(scope="module")
def bundle():
    sys.path.insert(0, str(INSTALLER))
    try:
        yield importlib.import_module("bundle")
    finally:
        sys.path.remove(str(INSTALLER))


def _installer_module(name: str):
    sys.path.insert(0, str(INSTALLER))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(INSTALLER))


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == name]


def _call(tree: ast.AST, name: str) -> ast.Call:
    calls = _calls(tree, name)
    assert len(calls) == 1, f"expected one {name}(...) in the spec"
    return calls[0]


def _keyword(call: ast.Call, name: str) -> ast.expr:
    return next(k.value for k in call.keywords if k.arg == name)


@pytest.fixture(scope="module")
def spec_tree() -> ast.Module:
    return ast.parse(SPEC.read_text(encoding="utf-8"), filename=str(SPEC))


def test_spec_excludes_torch_and_the_training_code(spec_tree: ast.Module, bundle) -> None:
    analysis = _call(spec_tree, "Analysis")
    assert ast.unparse(_keyword(analysis, "excludes")) == "list(bundle.EXCLUDES)"
    for module in ("torch", "torchvision", "pytorch_grad_cam", "radreview.training"):
        assert module in bundle.EXCLUDES
    # ... and nothing it must import is excluded.
    for needed in ("onnxruntime", "isal", "isal.isal_zlib", "pydicom", "PySide6.QtWidgets", "PySide6.QtGui", "radreview.gui"):
        assert needed not in bundle.EXCLUDES
    # model files are read by radreview.inference.onnx_file; onnx writes cards (training only)
    assert {"onnx", "google.protobuf", "ml_dtypes"} <= set(bundle.EXCLUDES)
    assert not any(h.startswith("radreview.training") for h in bundle.HIDDEN_IMPORTS)
    assert "radreview.training" in ast.unparse(spec_tree)  # collect_submodules filters it out too


def test_spec_entry_point_and_one_folder_layout(spec_tree: ast.Module) -> None:
    analysis = _call(spec_tree, "Analysis")
    assert "entry.py" in ast.unparse(analysis.args[0])
    exe, cli = _calls(spec_tree, "EXE")
    assert ast.unparse(_keyword(exe, "name")) == "bundle.APP_NAME"
    assert ast.unparse(_keyword(exe, "console")) == "not (IS_WINDOWS or IS_MACOS)"  # windowed GUI
    assert ast.unparse(_keyword(cli, "console")) == "True"  # Windows' console twin for batch commands
    assert ast.unparse(_keyword(exe, "exclude_binaries")) == "True"  # one folder, not one file
    assert ast.unparse(_keyword(exe, "upx")) == "False"
    assert "ICON" in ast.unparse(_keyword(exe, "icon"))
    _call(spec_tree, "COLLECT")
    bundle_call = _call(spec_tree, "BUNDLE")
    assert "bundle.BUNDLE_ID" in ast.unparse(_keyword(bundle_call, "bundle_identifier"))
    assert ast.unparse(_keyword(bundle_call, "version")) == "VERSION"  # from the package
    assert "'arm64' if IS_MACOS" in ast.unparse(_keyword(exe, "target_arch"))
    assert "from radreview import __version__ as VERSION" in SPEC.read_text(encoding="utf-8")


def test_spec_collects_data_plugin_metadata_and_hooks(spec_tree: ast.Module, bundle) -> None:
    text = ast.unparse(spec_tree)
    assert "bundle.DATA_FOLDERS" in text and bundle.DATA_FOLDERS == ("resources", "models")
    assert "copy_metadata(distribution)" in text
    for distribution in ("pylibjpeg", "pylibjpeg-openjpeg", "pylibjpeg-rle", "python-gdcm", "radreview"):
        assert distribution in bundle.METADATA_DISTRIBUTIONS
    for module in ("openjpeg", "rle", "gdcm", "pydicom.pixels.decoders.gdcm", "pydicom.pixels.decoders.pylibjpeg"):
        assert module in bundle.HIDDEN_IMPORTS
    assert "_gdcm" in text and "XML/*" in text
    assert "readerstudy/migrations" in text
    hooks = sorted(p.name for p in (INSTALLER / "hooks").glob("hook-*.py"))
    assert "hook-PySide6.QtGui.py" in hooks and "hook-PySide6.QtCore.py" in hooks


def test_hidden_imports_name_real_modules(bundle) -> None:
    import importlib.util

    for name in bundle.HIDDEN_IMPORTS:
        assert importlib.util.find_spec(name) is not None, name


@pytest.mark.parametrize(
    ("dest", "dropped"),
    [
        ("PySide6/Qt/plugins/platforms/libqwayland-egl.so", True),
        ("PySide6/Qt/plugins/platforms/libqeglfs.so", True),
        ("PySide6/Qt/plugins/platformthemes/libqgtk3.so", True),
        ("PySide6/Qt/translations/qtbase_de.qm", True),
        ("PySide6/Qt/lib/libQt6Network.so.6", True),
        ("libQt6Network.so.6", True),
        ("PySide6/Qt/lib/libQt6WaylandClient.so.6", True),
        ("PySide6/Qt6Quick.dll", True),
        ("_gdcm/gdcmdump", True),
        ("_gdcm/gdcmconv.exe", True),
        ("_gdcm/gdcmMSFF.dll", False),
        ("_gdcm/gdcmjpeg12.dll", False),
        ("pyqtgraph/examples/demo.py", True),
        ("PySide6/Qt/plugins/platforms/libqxcb.so", False),
        ("PySide6/Qt/plugins/platforms/libqoffscreen.so", False),
        ("PySide6/plugins/platforms/qwindows.dll", False),
        ("PySide6/Qt/plugins/platforms/libqcocoa.dylib", False),
        ("PySide6/Qt/plugins/imageformats/libqjpeg.so", False),
        ("PySide6/Qt/lib/libQt6Widgets.so.6", False),
        ("PySide6/Qt/lib/libQt6XcbQpa.so.6", False),
        ("_gdcm/libgdcmMSFF.so.3.2", False),
        ("_gdcm/XML/Part3.xml", False),
        ("onnxruntime/capi/onnxruntime_pybind11_state.so", False),
        ("models/fracture.onnx", False),
    ],
)
def test_pruning_keeps_what_the_viewer_loads(bundle, dest: str, dropped: bool) -> None:
    assert bundle.is_dropped(dest) is dropped
    assert bundle.keep_hook_entry((f"/src/{Path(dest).name}", str(Path(dest).parent))) is not dropped


def test_bundle_inspection_finds_torch(bundle, tmp_path: Path) -> None:
    app = tmp_path / "radreview"
    (app / "_internal" / "onnxruntime").mkdir(parents=True)
    (app / "_internal" / "onnxruntime" / "lib.so").write_bytes(b"\0" * 2048)
    (app / "radreview").write_bytes(b"\0" * 100)
    clean = bundle.inspect_bundle(app)
    assert clean.forbidden == () and clean.file_count == 2 and clean.total_bytes == 2148
    (app / "_internal" / "torch" / "lib").mkdir(parents=True)
    (app / "_internal" / "torch" / "lib" / "libtorch_cpu.so").write_bytes(b"\0")
    (app / "_internal" / "radreview" / "training").mkdir(parents=True)
    (app / "_internal" / "radreview" / "training" / "train.pyc").write_bytes(b"\0")
    dirty = bundle.inspect_bundle(app)
    assert any("torch" in f for f in dirty.forbidden)
    assert any("radreview/training" in f for f in dirty.forbidden)
    assert dirty.largest[0] == ("_internal/onnxruntime/lib.so", 2048)
    with pytest.raises(FileNotFoundError, match="make installer"):
        bundle.inspect_bundle(tmp_path / "missing")


def test_icons_are_generated(tmp_path: Path) -> None:
    from PIL import Image

    make_icon = _installer_module("make_icon")
    paths = make_icon.write_icons(tmp_path)
    with Image.open(paths["png"]) as png:
        assert png.size == (1024, 1024) and png.mode == "RGBA"
        assert png.getpixel((0, 0))[3] == 0 and png.getpixel((512, 512))[3] == 255  # rounded tile, opaque middle
    with Image.open(paths["ico"]) as ico:
        assert (256, 256) in ico.info["sizes"] and (16, 16) in ico.info["sizes"]
    assert paths["icns"].read_bytes()[:4] == b"icns"


def test_windows_signing_only_with_a_certificate(tmp_path: Path) -> None:
    windows = _installer_module("windows_package")
    assert windows.signing_config({}) is None
    pfx = b"not really a pfx"
    config = windows.signing_config(
        {"WINDOWS_CERTIFICATE_PFX_BASE64": base64.b64encode(pfx).decode(), "WINDOWS_CERTIFICATE_PASSWORD": "pw"},
        scratch=tmp_path,
    )
    assert config is not None and config.pfx.read_bytes() == pfx and config.password == "pw"
    args = config.signtool_arguments()
    assert args[:1] == ["sign"] and "SHA256" in args and config.timestamp_url in args
    unsigned = windows.iscc_arguments(Path("dist/radreview"), Path("out"), "0.1.0", Path("i.ico"), None, None)
    assert "/DSign" not in unsigned and not any(a.startswith("/S") for a in unsigned)
    assert "/DAppVersion=0.1.0" in unsigned and unsigned[-1].endswith("radreview.iss")
    assert windows.numeric_version("0.1.0.dev3+gabc") == "0.1.0"
    assert windows.numeric_version("2.3") == "2.3.0"


def test_inno_setup_script_covers_the_requirements() -> None:
    iss = (INSTALLER / "windows" / "radreview.iss").read_text(encoding="utf-8")
    assert "PrivilegesRequired=lowest" in iss
    assert "PrivilegesRequiredOverridesAllowed=dialog commandline" in iss
    assert "{autoprograms}" in iss  # Start-menu entry
    assert "Software\\Classes\\.dcm\\OpenWithProgids" in iss and 'Name: "dcmassoc"' in iss
    assert "vc_redist.x64.exe" in iss and "VC\\Runtimes\\x64" in iss
    assert "#ifdef Sign" in iss and "SignedUninstaller=yes" in iss
    assert "ArchitecturesInstallIn64BitMode=x64compatible" in iss
    # Every define the Python side passes is one the script reads.
    windows = _installer_module("windows_package")
    for arg in windows.iscc_arguments(Path("a"), Path("b"), "1.0.0", Path("c"), Path("d"), None)[:-1]:
        name = arg[2:].split("=")[0]
        assert name in iss, name


def test_macos_signing_and_notarisation_follow_the_environment() -> None:
    macos = _installer_module("macos_package")
    assert macos.signing_identity({}) == "-"
    assert macos.notary_arguments({}) is None
    assert macos.notary_arguments({"APPLE_ID": "a@b.c", "APPLE_TEAM_ID": "T"}) is None  # incomplete
    assert macos.notary_arguments({"APPLE_ID": "a@b.c", "APPLE_TEAM_ID": "T", "APPLE_APP_PASSWORD": "p"})[:2] == [
        "--apple-id", "a@b.c"]
    signed = macos.codesign_command(Path("x.app"), "Developer ID Application: X", entitlements=True)
    assert "--options" in signed and signed[signed.index("--options") + 1] == "runtime"
    assert "--timestamp" in signed and str(macos.ENTITLEMENTS) in signed
    assert "--timestamp" not in macos.codesign_command(Path("x"), "-", entitlements=False)
    entitlements = plistlib.loads(macos.ENTITLEMENTS.read_bytes())
    assert entitlements == {
        "com.apple.security.cs.allow-unsigned-executable-memory": True,
        "com.apple.security.cs.disable-library-validation": True,
    }


def test_macos_code_files_are_signed_inside_out(tmp_path: Path) -> None:
    macos = _installer_module("macos_package")
    app = tmp_path / "radreview.app"
    (app / "Contents" / "MacOS").mkdir(parents=True)
    (app / "Contents" / "Frameworks" / "PySide6" / "Qt").mkdir(parents=True)
    main = app / "Contents" / "MacOS" / "radreview"
    main.write_bytes(b"\xcf\xfa\xed\xfe" + b"\0" * 8)
    deep = app / "Contents" / "Frameworks" / "PySide6" / "Qt" / "libQt6Core.dylib"
    deep.write_bytes(b"\xcf\xfa\xed\xfe" + b"\0" * 8)
    (app / "Contents" / "Frameworks" / "readme.txt").write_text("not code")
    assert macos.code_files(app) == [deep, main]


def test_frozen_entry_loads_onnxruntime_before_anything_imports_qt() -> None:
    entry = INSTALLER / "entry.py"
    tree = ast.parse(entry.read_text(encoding="utf-8"))
    top_imports = {alias.name for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
    top_from = {node.module for node in tree.body if isinstance(node, ast.ImportFrom)}
    assert not any(m.startswith(("PySide6", "radreview")) for m in top_imports | top_from - {"__future__"})
    main = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main")
    source = ast.unparse(main)
    assert source.index("_preload_inference_runtime()") < source.index("from radreview.cli import main")
    preload = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "_preload_inference_runtime")
    assert "import onnxruntime" in ast.unparse(preload)
