"""radreview.system_check: missing xcb libraries are named with the commands that install them.

The missing library is simulated by the ``is_present`` finder the check takes; the real loader
and the real Qt files are only read, never faked.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT
from radreview import system_check
from radreview.system_check import PlatformProblem, check_qt_platform, elf_needed, ensure_qt_can_start

X11_DESKTOP = {"DISPLAY": ":0", "XDG_SESSION_TYPE": "x11"}
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Qt's xcb platform is Linux's")


def _all_but(*missing: str):
    return lambda soname: soname not in missing


def _must_not_be_asked(soname: str) -> bool:
    raise AssertionError(f"nothing should be checked here, but {soname} was")


def test_missing_libraries_are_named_with_the_apt_and_dnf_lines() -> None:
    problem = check_qt_platform(X11_DESKTOP, "linux", _all_but("libxcb-cursor.so.0", "libxcb-icccm.so.4"))
    assert problem is not None and problem.platform == "xcb" and not problem.no_display
    assert set(problem.missing) == {"libxcb-cursor.so.0", "libxcb-icccm.so.4"}
    assert problem.apt_command in ("sudo apt-get install libxcb-cursor0 libxcb-icccm4",
                                   "sudo apt-get install libxcb-icccm4 libxcb-cursor0")
    assert set(problem.dnf_command.split()[3:]) == {"xcb-util-cursor", "xcb-util-wm"}
    message = problem.message()
    assert "libxcb-cursor.so.0" in message and problem.apt_command in message and problem.dnf_command in message


def test_the_viewer_start_reports_and_returns_non_zero() -> None:
    stream = io.StringIO()
    status = ensure_qt_can_start(stream, desktop_dialog=False, environ=X11_DESKTOP, system="linux",
                                 is_present=_all_but("libxkbcommon-x11.so.0"))
    assert status == 1
    assert "sudo apt-get install libxkbcommon-x11-0" in stream.getvalue()
    assert "sudo dnf install libxkbcommon-x11" in stream.getvalue()
    quiet = io.StringIO()
    assert ensure_qt_can_start(quiet, desktop_dialog=False, environ=X11_DESKTOP, system="linux",
                               is_present=lambda soname: True) == 0
    assert quiet.getvalue() == ""


def test_libraries_of_one_package_are_installed_once() -> None:
    problem = PlatformProblem("xcb", missing=("libglib-2.0.so.0", "libgthread-2.0.so.0", "libxcb-shm.so.0",
                                              "libxcb-sync.so.1"))
    assert problem.apt_command == "sudo apt-get install libglib2.0-0 libxcb-shm0 libxcb-sync1"
    assert problem.dnf_command == "sudo dnf install glib2 libxcb"


def test_a_library_without_a_known_package_is_still_named() -> None:
    message = PlatformProblem("xcb", missing=("libxcb-future.so.9",)).message()
    assert "libxcb-future.so.9" in message and "apt-file search" in message and "dnf provides" in message
    assert "sudo apt-get install" not in message


@pytest.mark.parametrize(("environ", "system"), [
    ({"QT_QPA_PLATFORM": "offscreen"}, "linux"),
    ({"QT_QPA_PLATFORM": "minimal", "DISPLAY": ":0"}, "linux"),
    ({"QT_QPA_PLATFORM": "wayland;xcb", "DISPLAY": ":0"}, "linux"),
    (X11_DESKTOP, "win32"),
    (X11_DESKTOP, "darwin"),
])
def test_nothing_is_checked_where_qt_needs_no_x_libraries(environ: dict, system: str) -> None:
    assert check_qt_platform(environ, system, _must_not_be_asked) is None


def test_a_wayland_session_is_left_to_qt_when_it_has_the_wayland_plugin(tmp_path: Path) -> None:
    qt = tmp_path / "Qt"
    (qt / "plugins" / "platforms").mkdir(parents=True)
    wayland_session = {"XDG_SESSION_TYPE": "wayland", "WAYLAND_DISPLAY": "wayland-0", "DISPLAY": ":0"}
    # The frozen app carries no Wayland plugin: Qt will use xcb (through XWayland), so xcb is checked.
    problem = check_qt_platform(wayland_session, "linux", _all_but("libxcb-icccm.so.4"), qt=qt)
    assert problem is not None and problem.missing == ("libxcb-icccm.so.4",)
    (qt / "plugins" / "platforms" / "libqwayland.so").write_bytes(b"")
    assert check_qt_platform(wayland_session, "linux", _must_not_be_asked, qt=qt) is None
    # Asked for by name, xcb is checked on any session.
    explicit = {**wayland_session, "QT_QPA_PLATFORM": "xcb"}
    assert check_qt_platform(explicit, "linux", _all_but("libX11.so.6"), qt=qt).missing == ("libX11.so.6",)


def test_no_display_is_said_plainly() -> None:
    problem = check_qt_platform({}, "linux", lambda soname: True)
    assert problem is not None and problem.no_display and problem.missing == ()
    assert "DISPLAY is not set" in problem.message() and "QT_QPA_PLATFORM=offscreen" in problem.message()


@linux_only
def test_the_table_covers_every_library_the_installed_qt_links() -> None:
    qt = system_check.qt_dir()
    if qt is None or not (qt / "plugins" / "platforms" / "libqxcb.so").is_file():
        pytest.skip("this PySide6 has no xcb plugin to read")
    required = system_check.required_libraries(qt)
    assert "libxcb-cursor.so.0" in required and "libxkbcommon-x11.so.0" in required
    unknown = [s for s in required if s not in {library.soname for library in system_check.KNOWN_LIBRARIES}]
    assert unknown == [], f"add these to KNOWN_LIBRARIES with their packages: {unknown}"


@linux_only
def test_elf_reader_agrees_with_readelf() -> None:
    qt = system_check.qt_dir()
    readelf = shutil.which("readelf")
    if qt is None or readelf is None:
        pytest.skip("needs PySide6's Qt files and binutils' readelf")
    for name in ("plugins/platforms/libqxcb.so", "lib/libQt6Gui.so.6"):
        path = qt / name
        if not path.is_file():
            continue
        dump = subprocess.run([readelf, "-d", str(path)], capture_output=True, text=True, check=True).stdout
        expected = [line.split("[", 1)[1].rstrip("]") for line in dump.splitlines() if "(NEEDED)" in line]
        assert expected and elf_needed(path) == expected


def test_a_file_that_is_not_elf_is_refused(tmp_path: Path) -> None:
    text = tmp_path / "libqxcb.so"
    text.write_text("not a library")
    with pytest.raises(ValueError, match="not a little-endian ELF file"):
        elf_needed(text)
    damaged = tmp_path / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"\x7fELF\x02\x01garbage")
    with pytest.raises(ValueError, match="libqxcb.so: a damaged ELF file"):
        elf_needed(damaged)
    # A damaged Qt file does not stop the check: the known list stands in for it.
    assert "libxcb-cursor.so.0" in system_check.required_libraries(tmp_path / "Qt")


@linux_only
def test_the_window_commands_stop_before_qt_without_a_display() -> None:
    """The real start-up path, end to end: with xcb asked for and no display, radreview says why
    and exits 1 (missing libraries or no display, whichever this machine has) instead of Qt
    aborting the interpreter."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "XDG_SESSION_TYPE")}
    env.update(QT_QPA_PLATFORM="xcb", PYTHONPATH=str(REPO_ROOT))
    for argv in ([], ["study", "read", "--db", "no-such-study.sqlite"]):  # the viewer and the reading window
        result = subprocess.run([sys.executable, "-c", f"import sys; from radreview.cli import main; sys.exit(main({argv!r}))"],
                                cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 1, (argv, result.stderr)
        assert "radreview cannot open its window" in result.stderr
        assert "Could not load the Qt platform plugin" not in result.stderr


def test_make_run_checks_the_system_before_installing_or_starting() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    run_rule = next(line for line in makefile.splitlines() if line.startswith("run:"))
    assert run_rule.split(":", 1)[1].split()[0] == "system-check"
    assert "-m radreview.system_check" in makefile


@linux_only
def test_missing_packages_line_for_build_scripts() -> None:
    """What .ci/run installs before building the frozen app: only known package names, one line."""
    known = {"debian": {library.debian for library in system_check.KNOWN_LIBRARIES},
             "fedora": {library.fedora for library in system_check.KNOWN_LIBRARIES}}
    for distribution, names in known.items():
        result = subprocess.run([sys.executable, "-m", "radreview.system_check", "--missing-packages", distribution],
                                cwd=REPO_ROOT, env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert len(result.stdout.splitlines()) <= 1 and set(result.stdout.split()) <= names
