"""Where the bundled demo studies are (``resources/demo`` in the source tree)."""

from __future__ import annotations

from pathlib import Path

import radreview


def demo_dir() -> Path:
    """The folder of demo studies that the first run opens.

    The demo lives in the repository's ``resources/demo`` (next to the package when installed
    in editable mode, which is how ``make run`` installs radreview).
    """
    package = Path(radreview.__file__).resolve().parent
    for candidate in (package / "resources" / "demo", package.parent / "resources" / "demo"):
        if candidate.is_dir():
            return candidate
    return package.parent / "resources" / "demo"
