"""Timing and interaction telemetry of one read (no Qt: tested on its own).

Events are ``{"t_ms": ms since the case was shown, "kind": ..., **values}``. Bursts of the same
kind (a window/level drag, a zoom with the wheel, an opacity slider move) are merged into one
event holding the final value and the burst's ``end_ms``, so a long drag is one event, not
hundreds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

MERGE_WITHIN_MS = 400
MERGED_KINDS = {"window", "zoom", "heatmap_opacity", "confidence"}


class ReadTimer:
    """Time to first decision and total reading time of the case on screen."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.restart()

    def restart(self) -> None:
        self._start = self._clock()
        self.first_decision_ms: int | None = None
        self.events: list[dict[str, Any]] = []

    def elapsed_ms(self) -> int:
        return int(round((self._clock() - self._start) * 1000.0))

    def decision_made(self) -> None:
        if self.first_decision_ms is None:
            self.first_decision_ms = self.elapsed_ms()

    def record(self, kind: str, **values: Any) -> None:
        now = self.elapsed_ms()
        last = self.events[-1] if self.events else None
        if (last is not None and last["kind"] == kind and kind in MERGED_KINDS
                and now - last.get("end_ms", last["t_ms"]) <= MERGE_WITHIN_MS):
            last.update(values)
            last["end_ms"] = now
            return
        self.events.append({"t_ms": now, "kind": kind, **values})
