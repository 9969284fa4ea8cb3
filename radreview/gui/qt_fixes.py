"""A guard against a defect of the Qt bindings, checked once when ``radreview.gui`` is imported.

PySide6 6.12.0 under CPython 3.11 returns ``None`` from every void method (``setText``,
``resize``...) and ``True`` from ``SignalInstance.emit()`` without taking a reference, as if
they were immortal (they are only from CPython 3.12). Each call takes one reference away; after a
few thousand the interpreter frees ``None`` or ``True`` and aborts ("Fatal Python error:
none_dealloc / bool_dealloc"), in the middle of a session or at exit.

pyproject.toml therefore asks for ``PySide6-Essentials<6.12``. Should a broken build be installed
anyway, :func:`apply` detects the leak (it does not trust version numbers) and gives ``None``,
``True`` and ``False`` the huge reference count that CPython 3.12 gives its immortal objects, so
the lost references can never free them, and logs how to install a sound version.
"""

from __future__ import annotations

import ctypes
import logging
import sys

from PySide6.QtCore import QObject, Signal

log = logging.getLogger(__name__)

_PROBE_CALLS = 16
_IMMORTAL_BOOST = 1 << 40  # far more references than a session can lose
applied: bool = False


class _Probe(QObject):
    fired = Signal()


def leaked_references() -> int:
    """References to None/True lost by a few void calls and emits (0 for sound bindings)."""
    probe = _Probe()
    none_before, true_before = sys.getrefcount(None), sys.getrefcount(True)
    for _ in range(_PROBE_CALLS):
        probe.setObjectName("radreview-probe")  # a void method
        probe.fired.emit()
    lost_none = none_before - sys.getrefcount(None)
    lost_true = true_before - sys.getrefcount(True)
    # Sound bindings can only add references here (the probe's own locals), never remove.
    return max(0, lost_none, lost_true)


def _boost(obj: object, amount: int) -> None:
    refcount = ctypes.c_ssize_t.from_address(id(obj))  # ob_refcnt is the first field
    refcount.value += amount


def apply() -> bool:
    """Protect None/True/False if the bindings leak references to them; idempotent."""
    global applied
    if applied:
        return True
    if sys.version_info >= (3, 12) or leaked_references() < _PROBE_CALLS:
        return False
    for singleton in (None, True, False):
        _boost(singleton, _IMMORTAL_BOOST)
    applied = True
    log.warning(
        "the installed PySide6 loses references to None/True (a known defect of PySide6 6.12.0 "
        "on Python 3.11); radreview works around it, but please install PySide6-Essentials<6.12"
    )
    return True
