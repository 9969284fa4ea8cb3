"""PyInstaller's own hook for PySide6.QtWidgets, minus the Qt plugins, libraries and translations
that radreview never loads (installer/bundle.py lists them). Filtering here, not after the
analysis, keeps PyInstaller from collecting what only those files link against."""

import os
import sys

from PyInstaller.utils.hooks.qt import add_qt6_dependencies

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import bundle  # noqa: E402

hiddenimports, binaries, datas = add_qt6_dependencies(__file__)
binaries = [entry for entry in binaries if bundle.keep_hook_entry(entry)]
datas = [entry for entry in datas if bundle.keep_hook_entry(entry)]
