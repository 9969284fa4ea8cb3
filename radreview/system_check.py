"""Can Qt open a window on this machine? Checked before Qt is imported.

On Linux, Qt's xcb platform plugin links a dozen X11 libraries that a minimal Debian, Ubuntu or
Fedora install lacks (libxcb-cursor0, libxcb-icccm4, libxkbcommon-x11-0...). Without them Qt
aborts the process with "Could not load the Qt platform plugin "xcb"" and nothing a user can act
on. This module finds the missing libraries first and names the command that installs them:

    $ radreview
    radreview cannot open its window: Qt's xcb platform plugin needs system libraries that are
    missing: libxcb-icccm.so.4, libxcb-keysyms.so.1.
    Install them with:
      Debian, Ubuntu:  sudo apt-get install libxcb-icccm4 libxcb-keysyms1
      Fedora, RHEL:    sudo dnf install xcb-util-wm xcb-util-keysyms

It imports no Qt (PySide6 would abort on the very error it reports), reads the libraries that
the installed Qt actually links from its ELF files (so a PySide6 upgrade needing another
library is caught too), and asks the dynamic loader for each. Nothing is checked on Windows and
macOS, or when QT_QPA_PLATFORM names a platform without a display server (offscreen, minimal).

``python -m radreview.system_check`` prints the verdict and exits 0 (ready) or 1.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO


@dataclass(frozen=True)
class SystemLibrary:
    """A shared library Qt needs from the system, and the packages that provide it."""

    soname: str
    debian: str  # apt package (Debian 12, Ubuntu 22.04 and 24.04)
    fedora: str  # dnf package (Fedora, RHEL 9 and its rebuilds)


def _lib(soname: str, debian: str, fedora: str) -> SystemLibrary:
    return SystemLibrary(soname, debian, fedora)


# Every library outside Qt itself and glibc that Qt's xcb plugin, libQt6XcbQpa, QtGui, QtCore,
# QtWidgets and QtDBus link (readelf -d, PySide6 6.11), with its packages.
# tests/test_system_check.py reads the installed PySide6's files and fails if one is missing here.
KNOWN_LIBRARIES: tuple[SystemLibrary, ...] = (
    _lib("libxcb-cursor.so.0", "libxcb-cursor0", "xcb-util-cursor"),
    _lib("libxcb-icccm.so.4", "libxcb-icccm4", "xcb-util-wm"),
    _lib("libxcb-util.so.1", "libxcb-util1", "xcb-util"),
    _lib("libxcb-image.so.0", "libxcb-image0", "xcb-util-image"),
    _lib("libxcb-keysyms.so.1", "libxcb-keysyms1", "xcb-util-keysyms"),
    _lib("libxcb-render-util.so.0", "libxcb-render-util0", "xcb-util-renderutil"),
    _lib("libxcb.so.1", "libxcb1", "libxcb"),
    _lib("libxcb-randr.so.0", "libxcb-randr0", "libxcb"),
    _lib("libxcb-render.so.0", "libxcb-render0", "libxcb"),
    _lib("libxcb-shape.so.0", "libxcb-shape0", "libxcb"),
    _lib("libxcb-shm.so.0", "libxcb-shm0", "libxcb"),
    _lib("libxcb-sync.so.1", "libxcb-sync1", "libxcb"),
    _lib("libxcb-xfixes.so.0", "libxcb-xfixes0", "libxcb"),
    _lib("libxcb-xkb.so.1", "libxcb-xkb1", "libxcb"),
    _lib("libxcb-xinerama.so.0", "libxcb-xinerama0", "libxcb"),  # older PySide6
    _lib("libxcb-xinput.so.0", "libxcb-xinput0", "libxcb"),  # older PySide6
    _lib("libxcb-glx.so.0", "libxcb-glx0", "libxcb"),
    _lib("libxkbcommon.so.0", "libxkbcommon0", "libxkbcommon"),
    _lib("libxkbcommon-x11.so.0", "libxkbcommon-x11-0", "libxkbcommon-x11"),
    _lib("libX11.so.6", "libx11-6", "libX11"),
    _lib("libX11-xcb.so.1", "libx11-xcb1", "libX11-xcb"),
    _lib("libGL.so.1", "libgl1", "libglvnd-glx"),
    _lib("libEGL.so.1", "libegl1", "libglvnd-egl"),
    _lib("libfontconfig.so.1", "libfontconfig1", "fontconfig"),
    _lib("libfreetype.so.6", "libfreetype6", "freetype"),
    _lib("libglib-2.0.so.0", "libglib2.0-0", "glib2"),
    _lib("libgthread-2.0.so.0", "libglib2.0-0", "glib2"),
    _lib("libdbus-1.so.3", "libdbus-1-3", "dbus-libs"),
    _lib("libzstd.so.1", "libzstd1", "libzstd"),
    _lib("libz.so.1", "zlib1g", "zlib"),
)
_BY_SONAME = {library.soname: library for library in KNOWN_LIBRARIES}

# The Qt files the xcb platform loads (relative to PySide6/Qt), whose dependencies are checked.
QT_XCB_FILES: tuple[str, ...] = (
    "plugins/platforms/libqxcb.so",
    "lib/libQt6XcbQpa.so.6",
    "lib/libQt6Gui.so.6",
    "lib/libQt6Widgets.so.6",
    "lib/libQt6Core.so.6",
    "lib/libQt6DBus.so.6",
)

# The C and C++ runtime: present wherever Python runs, never worth naming.
_RUNTIME_PREFIXES = ("libc.so", "libm.so", "libdl.so", "librt.so", "libpthread.so", "ld-linux", "libstdc++.so",
                     "libgcc_s.so")

# Platforms that need no display server: nothing to check.
_HEADLESS_PLATFORMS = frozenset({"offscreen", "minimal", "vnc", "linuxfb", "eglfs", "vkkhrdisplay"})


@dataclass(frozen=True)
class PlatformProblem:
    """Why Qt would not start here, and what to do about it."""

    platform: str
    missing: tuple[str, ...] = ()  # sonames
    no_display: bool = False

    def packages(self, distribution: str) -> list[str]:
        """Packages providing the missing libraries, in order, for "debian" or "fedora"."""
        names: list[str] = []
        for soname in self.missing:
            library = _BY_SONAME.get(soname)
            if library is not None:
                name = getattr(library, distribution)
                if name not in names:
                    names.append(name)
        return names

    @property
    def apt_command(self) -> str:
        return "sudo apt-get install " + " ".join(self.packages("debian"))

    @property
    def dnf_command(self) -> str:
        return "sudo dnf install " + " ".join(self.packages("fedora"))

    def message(self) -> str:
        if self.missing:
            lines = [
                f"radreview cannot open its window: Qt's {self.platform} platform plugin needs system libraries "
                f"that are missing: {', '.join(self.missing)}.",
            ]
            if self.packages("debian"):
                lines += [
                    "Install them with:",
                    f"  Debian, Ubuntu:  {self.apt_command}",
                    f"  Fedora, RHEL:    {self.dnf_command}",
                ]
            unknown = [s for s in self.missing if s not in _BY_SONAME]
            if unknown:
                lines.append("For " + ", ".join(unknown) + ": `apt-file search NAME` or `dnf provides '*/NAME'` "
                             "names the package.")
            lines.append("Then start radreview again. (QT_QPA_PLATFORM=offscreen runs without a window, "
                         "e.g. for --smoke-test.)")
            return "\n".join(lines)
        return ("radreview cannot open its window: there is no X display (DISPLAY is not set).\n"
                "Start it from a desktop session, or over `ssh -X`; QT_QPA_PLATFORM=offscreen runs without a window.")


def elf_needed(path: str | Path) -> list[str]:
    """The DT_NEEDED entries (sonames a library links) of a 64- or 32-bit little-endian ELF file.

    Raises ValueError naming the file when it is not one, or is cut short.
    """
    data = Path(path).read_bytes()
    if data[:4] != b"\x7fELF" or data[5:6] != b"\x01":
        raise ValueError(f"{path}: not a little-endian ELF file")
    try:
        return _elf_needed(data)
    except (struct.error, ValueError, IndexError) as exc:
        raise ValueError(f"{path}: a damaged ELF file ({exc})") from exc


def _elf_needed(data: bytes) -> list[str]:
    wide = data[4] == 2
    header = "<QQQIHHHHHH" if wide else "<IIIIHHHHHH"
    _entry, phoff, _shoff, _flags, _ehsize, phentsize, phnum, _shentsize, _shnum, _shstrndx = struct.unpack_from(
        header, data, 0x18)
    segment = "<IIQQQQQQ" if wide else "<IIIIIIII"
    loads, dynamic = [], None
    for i in range(phnum):
        fields = struct.unpack_from(segment, data, phoff + i * phentsize)
        if wide:
            p_type, _pf, p_offset, p_vaddr, _pa, p_filesz, _pm, _al = fields
        else:
            p_type, p_offset, p_vaddr, _pa, p_filesz, _pm, _pf, _al = fields
        if p_type == 1:  # PT_LOAD: maps file offsets to addresses
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == 2:  # PT_DYNAMIC
            dynamic = (p_offset, p_filesz)
    if dynamic is None:
        return []
    entry_format = "<qQ" if wide else "<iI"
    size = struct.calcsize(entry_format)
    needed_offsets, strtab = [], None
    for offset in range(dynamic[0], dynamic[0] + dynamic[1], size):
        tag, value = struct.unpack_from(entry_format, data, offset)
        if tag == 0:  # DT_NULL
            break
        if tag == 1:  # DT_NEEDED: an offset into the string table
            needed_offsets.append(value)
        elif tag == 5:  # DT_STRTAB: the string table's address
            strtab = value
    if strtab is None:
        return []
    base = next((off + strtab - vaddr for vaddr, off, filesz in loads if vaddr <= strtab < vaddr + filesz), strtab)
    names = []
    for offset in needed_offsets:
        end = data.index(b"\0", base + offset)
        names.append(data[base + offset:end].decode("ascii", "replace"))
    return names


def qt_dir() -> Path | None:
    """PySide6's Qt folder (lib/, plugins/), found without importing PySide6."""
    if getattr(sys, "frozen", False) and hasattr(sys, "_MEIPASS"):
        candidate = Path(sys._MEIPASS) / "PySide6" / "Qt"  # type: ignore[attr-defined]
        return candidate if candidate.is_dir() else None
    try:
        spec = importlib.util.find_spec("PySide6")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    candidate = Path(next(iter(spec.submodule_search_locations))) / "Qt"
    return candidate if candidate.is_dir() else None


def bundled_library_dirs(qt: Path | None) -> list[Path]:
    """Folders whose libraries come with radreview (Qt's own; the frozen app's _internal)."""
    dirs = [qt / "lib"] if qt is not None else []
    if getattr(sys, "frozen", False) and hasattr(sys, "_MEIPASS"):
        dirs.append(Path(sys._MEIPASS))  # type: ignore[attr-defined]
    return [d for d in dirs if d.is_dir()]


def required_libraries(qt: Path | None) -> list[str]:
    """Sonames the xcb platform needs from outside Qt: read from the Qt files when they are there."""
    needed: list[str] = []
    files = [qt / name for name in QT_XCB_FILES] if qt is not None else []
    for path in files:
        if not path.is_file():
            continue
        try:
            needed.extend(elf_needed(path))
        except (OSError, ValueError):
            continue
    if not needed:  # no Qt files to read (or unreadable): the list they had when this was written
        needed = [library.soname for library in KNOWN_LIBRARIES
                  if library.soname not in ("libxcb-xinerama.so.0", "libxcb-xinput.so.0", "libxcb-glx.so.0")]
    ordered = []
    for soname in needed:
        if soname.startswith(("libQt6", "libicu")) or soname.startswith(_RUNTIME_PREFIXES):
            continue
        if soname not in ordered:
            ordered.append(soname)
    return ordered


def loader_finds(soname: str, bundled: Sequence[Path] = ()) -> bool:
    """Whether the library is shipped with radreview or the dynamic loader can load it."""
    if any((d / soname).exists() for d in bundled):
        return True
    try:
        ctypes.CDLL(soname)
    except OSError:
        return False
    return True


def missing_libraries(is_present: Callable[[str], bool] | None = None, qt: Path | None = None) -> tuple[str, ...]:
    """Sonames the xcb platform needs that cannot be loaded (default finder: bundled, then the loader)."""
    if is_present is None:
        bundled = bundled_library_dirs(qt)

        def is_present(soname: str) -> bool:
            return loader_finds(soname, bundled)

    return tuple(soname for soname in required_libraries(qt) if not is_present(soname))


def platform_to_check(environ: Mapping[str, str], system: str, wayland_available: bool) -> str | None:
    """The display platform Qt will use here, when it is one that needs system libraries (xcb)."""
    if not system.startswith("linux"):
        return None
    requested = environ.get("QT_QPA_PLATFORM", "").strip()
    if requested:
        first = requested.split(";")[0].split(":")[0].strip().lower()
        return "xcb" if first == "xcb" else None
    # Unset: Qt takes Wayland first on a Wayland session when it has the plugin, else xcb.
    if environ.get("XDG_SESSION_TYPE", "").lower() == "wayland" and wayland_available:
        return None
    return "xcb"


def check_qt_platform(
    environ: Mapping[str, str] | None = None,
    system: str | None = None,
    is_present: Callable[[str], bool] | None = None,
    qt: Path | None = None,
) -> PlatformProblem | None:
    """None when Qt can start its display platform here, else what stands in the way.

    ``is_present(soname)`` decides whether a library can be loaded (default: the bundled
    folders, then the dynamic loader); ``qt`` is PySide6's Qt folder (default: found).
    """
    environ = os.environ if environ is None else environ
    system = sys.platform if system is None else system
    qt = qt_dir() if qt is None else qt
    wayland = qt is not None and any((qt / "plugins" / "platforms").glob("libqwayland*.so"))
    platform = platform_to_check(environ, system, wayland)
    if platform is None:
        return None
    missing = missing_libraries(is_present, qt)
    if missing:
        return PlatformProblem(platform, missing=missing)
    if not environ.get("DISPLAY"):
        return PlatformProblem(platform, no_display=True)
    return None


def report(problem: PlatformProblem, stream: TextIO | None = None, desktop_dialog: bool | None = None) -> None:
    """Print the problem; with no terminal to print to (started from a menu), also show it in the
    desktop's own dialog tool when there is one: Qt cannot open a window, which is the problem.

    ``desktop_dialog`` None: only when ``stream`` is not a terminal and there is a display.
    """
    stream = sys.stderr if stream is None else stream
    text = problem.message()
    if stream is not None:
        print(text, file=stream, flush=True)
    if desktop_dialog is None:
        on_terminal = stream is not None and hasattr(stream, "isatty") and stream.isatty()
        has_display = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
        desktop_dialog = not on_terminal and has_display
    if desktop_dialog and not problem.no_display:
        show_desktop_dialog(text)


def show_desktop_dialog(text: str) -> bool:
    """An error dialog without Qt: zenity (GNOME), kdialog (KDE) or xmessage, whichever exists."""
    commands = (
        ("zenity", ["--error", "--no-wrap", "--title=radreview", f"--text={text}"]),
        ("kdialog", ["--title", "radreview", "--error", text]),
        ("xmessage", ["-center", text]),
    )
    for tool, arguments in commands:
        path = shutil.which(tool)
        if path is None:
            continue
        try:
            subprocess.run([path, *arguments], timeout=600, check=False,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError):
            continue
        return True
    return False


def ensure_qt_can_start(stream: TextIO | None = None, desktop_dialog: bool | None = None, **check_arguments) -> int:
    """0 when Qt can start; otherwise report why (terminal, desktop dialog) and return 1.

    ``check_arguments`` go to :func:`check_qt_platform` (tests pass a fake ``is_present``).
    """
    problem = check_qt_platform(**check_arguments)
    if problem is None:
        return 0
    report(problem, stream, desktop_dialog)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m radreview.system_check``: say whether the viewer can open its window here.

    ``--missing-packages debian|fedora`` prints (on one line) the packages providing the xcb
    libraries missing here, whatever QT_QPA_PLATFORM says: for build scripts that install them,
    so that the frozen app carries them (installer/README.md).
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python -m radreview.system_check", description=main.__doc__)
    parser.add_argument("--missing-packages", choices=("debian", "fedora"),
                        help="print the packages of the missing xcb libraries and exit 0")
    args = parser.parse_args(argv)
    if args.missing_packages:
        if sys.platform.startswith("linux"):
            print(" ".join(PlatformProblem("xcb", missing_libraries(qt=qt_dir())).packages(args.missing_packages)))
        return 0
    problem = check_qt_platform()
    if problem is None:
        print("radreview: the system has what Qt needs to open the viewer's window.")
        return 0
    report(problem, sys.stderr, desktop_dialog=False)
    return 1


if __name__ == "__main__":
    sys.exit(main())
