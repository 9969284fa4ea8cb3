"""How a reader used the AI's heatmap in one read, from the read's telemetry.

The reading window records, in every read that shows the AI (see radreview.gui.reading.window):

- ``{"kind": "ai_shown", "t_ms", "in_scope", "tier", "heatmap_available", "heatmap_visible", ...}``
  once, when the AI appears;
- ``{"kind": "heatmap", "t_ms", "visible", "by"}`` whenever the heatmap on screen appears or goes:
  ``by`` is ``"reader"`` for the reader's toggle (H or the box), ``"image"`` when another image of
  the case (with or without a map) is shown.

:func:`heatmap_use` turns those into what an analysis needs per read: whether a heatmap was
available and shown, for how long, and how often the reader toggled it. A read saved without that
telemetry (e.g. through the data layer by the scripted reader) gives ``None`` for each: unknown,
not "not shown".
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

FIELDS = ("heatmap_available", "heatmap_shown", "heatmap_shown_ms", "heatmap_toggles")


def heatmap_use(telemetry: Iterable[dict[str, Any]], total_ms: int | None) -> dict[str, Any]:
    """``heatmap_available``, ``heatmap_shown`` (bools), ``heatmap_shown_ms``, ``heatmap_toggles``."""
    events = [e for e in telemetry if isinstance(e, dict)]
    start = next((e for e in events if e.get("kind") == "ai_shown"), None)
    if start is None:
        return dict.fromkeys(FIELDS)
    visible = bool(start.get("heatmap_visible"))
    since = int(start.get("t_ms") or 0)
    shown_ms, shown, toggles = 0, visible, 0
    available = bool(start.get("heatmap_available"))
    for event in events:
        if event.get("kind") != "heatmap" or int(event.get("t_ms") or 0) < since:
            continue
        now = int(event.get("t_ms") or 0)
        if visible:
            shown_ms += now - since
        visible, since = bool(event.get("visible")), now
        shown = shown or visible
        available = available or bool(event.get("available", event.get("visible")))
        toggles += event.get("by", "reader") == "reader"
    end = total_ms if total_ms is not None else since
    if visible:
        shown_ms += max(0, int(end) - since)
    return {"heatmap_available": available, "heatmap_shown": shown, "heatmap_shown_ms": shown_ms,
            "heatmap_toggles": toggles}
