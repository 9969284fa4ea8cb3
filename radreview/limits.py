"""Resource limits for everything radreview reads from files: checked before the work, not after.

One frozen :class:`Limits` holds them. Its defaults keep the peak memory for any single file
well under 1.5 GB (docs/security.md gives the arithmetic) while leaving room for every real
radiograph; each can be changed by an environment variable ``RADREVIEW_LIMIT_<NAME>``
(e.g. ``RADREVIEW_LIMIT_MAX_FRAME_PIXELS=100000000``), by the ``--limit NAME=VALUE`` option of
the ``radreview`` command, or in code with :func:`set_limits`. Sizes accept ``k``/``M``/``G``
suffixes (powers of 1024: ``512M``).

Pure Python: imported by the studies and inference packages alike.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

ENV_PREFIX = "RADREVIEW_LIMIT_"


class LimitError(ValueError):
    """A limit given by the user (environment, ``--limit``) is not a valid value."""


@dataclass(frozen=True)
class Limits:
    """What one file may ask for. Every field is a whole number (seconds for the timeout)."""

    # DICOM and raster images: decoded pixels of one frame (rows x columns), checked against the
    # header and, for compressed frames, against the codestream's own header before decoding.
    max_frame_pixels: int = 8192 * 8192
    # All frames of one DICOM file together (rows x columns x frames).
    max_file_pixels: int = 1 << 30
    # PNG/JPEG/TIFF/BMP: pixels of one image (Pillow's own bomb error comes only at 179 M).
    max_raster_pixels: int = 8192 * 8192
    # Deflated Explicit VR Little Endian: bytes the dataset may inflate to (streamed, capped).
    max_inflated_bytes: int = 256 << 20
    # A file without the DICM preamble is probed as a raw dataset only up to this size.
    max_raw_dataset_bytes: int = 64 << 20
    # Zip archives: bytes unpacked in all, members, and uncompressed/compressed ratio of a member.
    max_zip_bytes: int = 4 << 30
    max_zip_members: int = 50_000
    max_zip_ratio: int = 200
    # A decoder run in a separate process (the gdcm back end) that takes longer is stopped.
    decode_timeout_seconds: int = 120
    # Model files: the card's JSON text, the input size a card may ask for, label/model names.
    max_card_bytes: int = 16 << 20  # a card's scope statistics take a few MB (base64 float32)
    max_model_input_pixels: int = 2048 * 2048
    max_name_length: int = 64

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None, base: Limits | None = None) -> Limits:
        """``base`` (default: the built-in defaults) with any ``RADREVIEW_LIMIT_*`` variables applied."""
        environ = os.environ if environ is None else environ
        changes = {f.name: environ[ENV_PREFIX + f.name.upper()] for f in fields(cls)
                   if ENV_PREFIX + f.name.upper() in environ}
        return (base or cls()).with_text(changes, source="environment variable " + ENV_PREFIX + "*")

    def with_text(self, changes: Mapping[str, str], source: str = "--limit") -> Limits:
        """A copy with ``{name: "512M"}`` applied; raises :class:`LimitError` naming the bad one."""
        known = {f.name for f in fields(self)}
        parsed: dict[str, int] = {}
        for name, text in changes.items():
            key = name.strip().lower().replace("-", "_")
            if key not in known:
                raise LimitError(f"{source}: unknown limit {name!r} (known: {', '.join(sorted(known))})")
            parsed[key] = parse_size(text, f"{source} {key}")
        return replace(self, **parsed)

    def describe(self) -> list[tuple[str, int]]:
        return [(f.name, getattr(self, f.name)) for f in fields(self)]


_SIZE = re.compile(r"^\s*(\d+)\s*([kKmMgG]?)i?[bB]?\s*$")
_FACTORS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def parse_size(text: str, what: str = "limit") -> int:
    """``"512M"`` -> 536870912; a positive whole number with an optional k/M/G suffix."""
    match = _SIZE.match(str(text))
    if not match:
        raise LimitError(f"{what}: {text!r} is not a whole number (k/M/G suffixes allowed)")
    value = int(match.group(1)) * _FACTORS[match.group(2).lower()]
    if value <= 0:
        raise LimitError(f"{what}: must be positive, got {text!r}")
    return value


_current: Limits | None = None


def limits() -> Limits:
    """The limits in force: the environment's, read once, unless :func:`set_limits` changed them."""
    global _current
    if _current is None:
        _current = Limits.from_environment()
    return _current


def set_limits(new: Limits | None = None, **changes: int) -> Limits:
    """Put ``new`` (or the current limits with ``changes``) in force; returns the previous ones.

    ``set_limits(None)`` with no changes goes back to the environment's limits.
    """
    global _current
    previous = limits()
    if new is None and not changes:
        _current = Limits.from_environment()
    else:
        _current = replace(new or previous, **changes)
    return previous


def hint(name: str) -> str:
    """How a user raises one limit, for messages: ``(limit max_frame_pixels = 67108864; ...)``."""
    value = getattr(limits(), name)
    return f"limit {name} = {value}; set {ENV_PREFIX}{name.upper()} or --limit {name}=N to change it"
