"""The installed Qt bindings keep their references (PySide6 6.12.0 on Python 3.11 does not:
every void call and emit takes a reference from None/True until the interpreter aborts)."""

from __future__ import annotations

import sys

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QObject, Signal  # noqa: E402

from radreview.gui import qt_fixes  # noqa: E402

pytestmark = pytest.mark.gui


class _Emitter(QObject):
    changed = Signal(object)


def test_void_calls_and_emits_keep_references_to_none_and_true(qtbot) -> None:
    emitter = _Emitter()
    received = []
    emitter.changed.connect(received.append)
    none_before, true_before = sys.getrefcount(None), sys.getrefcount(True)
    for _ in range(2000):
        emitter.setObjectName("x")
        emitter.changed.emit(None)
    received.clear()
    assert sys.getrefcount(None) >= none_before - 10, "the Qt bindings lose references to None"
    assert sys.getrefcount(True) >= true_before - 10, "the Qt bindings lose references to True"


def test_the_guard_sees_nothing_to_fix_with_sound_bindings() -> None:
    assert qt_fixes.leaked_references() == 0, "install PySide6-Essentials<6.12 (see qt_fixes.py)"
    assert not qt_fixes.applied
