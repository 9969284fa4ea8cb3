"""The size a compressed frame will decode to, read from its own header before any decoder runs.

A DICOM header's Rows/Columns say nothing about what a JPEG or JPEG 2000 decoder allocates: the
decoder trusts the codestream. So the codestream header is read here first:
- JPEG (ITU-T T.81, Annex B): the SOFn marker segment (P, Y, X, Nf);
- JPEG-LS (ITU-T T.87, C.2.2): SOF55 (0xFFF7), the same layout;
- JPEG 2000 / HTJ2K (ITU-T T.800, A.5.1): the SIZ marker segment after SOC
  (Xsiz - XOsiz, Ysiz - YOsiz, Csiz), also inside a JP2 wrapper;
- RLE (PS3.5 G.3.1): the segment count (at most 15); its size comes from Rows/Columns.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

JPEG_SYNTAXES = frozenset({
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",
})
JPEG_LS_SYNTAXES = frozenset({"1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"})
J2K_SYNTAXES = frozenset({
    "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.92", "1.2.840.10008.1.2.4.93",
    "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203",
})
RLE_SYNTAX = "1.2.840.10008.1.2.5"

# SOFn markers: every C0-CF except DHT (C4), JPG (C8) and DAC (CC); plus JPEG-LS SOF55.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC} | {0xF7}
_STANDALONE = frozenset({0x01, 0xD8, *range(0xD0, 0xD8)})
# How far into a frame a header is looked for: real files put it in the first few hundred bytes
# (after APPn/COM segments, which can be up to 64 KiB each).
SEARCH_BYTES = 1 << 20


class CodestreamError(ValueError):
    """The frame has no readable header: it is damaged or not in the transfer syntax it claims."""


@dataclass(frozen=True)
class FrameHeader:
    rows: int  # 0: not stated here (JPEG with a DNL marker); the DICOM header's Rows apply
    columns: int
    components: int
    bits: int
    codec: str

    @property
    def pixels(self) -> int:
        return self.rows * self.columns


def frame_header(transfer_syntax: str, frame: bytes) -> FrameHeader | None:
    """The header of one compressed frame; None for syntaxes without one (native, RLE, others)."""
    ts = str(transfer_syntax)
    if ts in JPEG_SYNTAXES or ts in JPEG_LS_SYNTAXES:
        return jpeg_header(frame, "JPEG-LS" if ts in JPEG_LS_SYNTAXES else "JPEG")
    if ts in J2K_SYNTAXES:
        return j2k_header(frame)
    if ts == RLE_SYNTAX:
        check_rle_header(frame)
    return None


def jpeg_header(data: bytes, codec: str = "JPEG") -> FrameHeader:
    """The SOFn (or SOF55) segment of a JPEG/JPEG-LS codestream."""
    if data[:2] != b"\xff\xd8":
        raise CodestreamError(f"the {codec} frame does not start with an SOI marker")
    pos, end = 2, min(len(data), SEARCH_BYTES)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            raise CodestreamError(f"the {codec} frame has a damaged marker at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if marker in _SOF_MARKERS:
            if length < 8 or pos + 10 > len(data):
                raise CodestreamError(f"the {codec} frame header (SOF) is cut short")
            bits, rows, columns, components = struct.unpack_from(">BHHB", data, pos + 4)
            if not columns or not components:
                raise CodestreamError(f"the {codec} frame header says {columns} columns and {components} components")
            return FrameHeader(rows, columns, components, bits, codec)
        if marker in (0xDA, 0xD9) or length < 2:  # scan or end of image before any frame header
            break
        pos += 2 + length
    raise CodestreamError(f"no {codec} frame header (SOF marker) found")


def j2k_header(data: bytes) -> FrameHeader:
    """The SIZ segment of a JPEG 2000 codestream (raw, or inside a JP2 file's jp2c box)."""
    start = 0 if data[:4] == b"\xff\x4f\xff\x51" else data.find(b"\xff\x4f\xff\x51", 0, SEARCH_BYTES)
    if start < 0:
        raise CodestreamError("no JPEG 2000 codestream header (SOC and SIZ markers) found")
    siz = start + 4
    if siz + 38 + 3 > len(data):
        raise CodestreamError("the JPEG 2000 image header (SIZ) is cut short")
    _, _, xsiz, ysiz, xosiz, yosiz, _, _, _, _, csiz = struct.unpack_from(">HHIIIIIIIIH", data, siz)
    if xosiz >= xsiz or yosiz >= ysiz or not csiz:
        raise CodestreamError(f"the JPEG 2000 image header is inconsistent (size {xsiz}x{ysiz}, "
                              f"offset {xosiz}x{yosiz}, {csiz} components)")
    bits = (data[siz + 38] & 0x7F) + 1
    return FrameHeader(ysiz - yosiz, xsiz - xosiz, csiz, bits, "JPEG 2000")


def check_rle_header(data: bytes) -> None:
    """An RLE frame starts with a 64-byte header: the segment count (1-15) and their offsets."""
    if len(data) < 64:
        raise CodestreamError("the RLE frame header is cut short")
    (segments,) = struct.unpack_from("<I", data, 0)
    if not 1 <= segments <= 15:
        raise CodestreamError(f"the RLE frame header says {segments} segments (1 to 15 allowed)")
