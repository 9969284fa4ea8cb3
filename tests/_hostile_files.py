"""Hostile and broken files built from real ones (pydicom's test files, resources/demo), for the
robustness suites: each reproduces an attack of issue 12 in a few kilobytes of tmp_path."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate, generate_frames
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_JPEG_BASELINE = REPO_ROOT / "resources" / "demo" / "DEMO_HIP" / "IMG0000097.dcm"
GIB = 1 << 30

# Byte changes (offset -> new value) to the first frame of pydicom's files that make gdcm throw
# an uncaught C++ exception (SIGABRT), found by mutating the frames' first 300 bytes.
GDCM_ABORTS = {
    "JPEG2000.dcm": {214: 0x95, 46: 0x37, 42: 0x31, 43: 0xAB, 174: 0x17, 180: 0x48, 38: 0xCE, 185: 0xEC,
                     196: 0x03, 112: 0x77, 221: 0xB8, 162: 0x1D},
    "JPEG-LL.dcm": {189: 0xF6, 192: 0x20, 98: 0xB4, 22: 0x15, 70: 0x3F, 259: 0x35, 205: 0xA4, 15: 0x75},
}


# Byte changes to MR_small_RLE.dcm's frame that make pylibjpeg-rle panic (a Rust panic arrives in
# Python as pyo3's PanicException, a BaseException that ``except Exception`` lets through).
RLE_PANIC = {1065: 225, 1128: 175, 1320: 241, 1438: 156, 1743: 165, 1965: 185, 2042: 238, 2104: 68, 2236: 82,
             2397: 43, 2457: 247, 2464: 185, 2959: 193, 3167: 73, 3220: 85, 3247: 174, 3451: 65, 3611: 62,
             3836: 250, 3942: 172, 3951: 51, 4088: 134, 4179: 102, 4435: 25, 5017: 240, 5082: 15, 5441: 71,
             5585: 222, 5590: 149, 5767: 63}


def testfile(name: str) -> Path:
    return Path(get_testdata_file(name))


def first_frame(ds: pydicom.Dataset) -> bytes:
    return next(generate_frames(ds.PixelData, number_of_frames=int(ds.get("NumberOfFrames", 1) or 1)))


def with_frame(source: Path, frame: bytes, out: Path) -> Path:
    """``source`` with its pixel data replaced by one encapsulated ``frame``."""
    ds = pydicom.dcmread(source)
    ds.NumberOfFrames = 1
    ds.PixelData = encapsulate([frame])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()  # not its source again
    ds.save_as(out)
    return out


def mutated(name: str, changes: dict[int, int], out: Path) -> Path:
    frame = bytearray(first_frame(pydicom.dcmread(testfile(name))))
    for offset, value in changes.items():
        frame[offset] = value
    return with_frame(testfile(name), bytes(frame), out)


def gdcm_abort_file(name: str, out: Path) -> Path:
    """A file of ``name``'s transfer syntax whose frame makes gdcm abort the process."""
    return mutated(name, GDCM_ABORTS[name], out)


def gdcm_kills_a_process_on(path: Path) -> int:
    """Decode ``path`` with gdcm in a throwaway process; its return code (negative: a signal)."""
    code = ("import sys, pydicom; from pydicom.pixels import pixel_array; "
            "pixel_array(pydicom.dcmread(sys.argv[1]), decoding_plugin='gdcm')")
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, timeout=60)
    return result.returncode


def jpeg_claiming(size: tuple[int, int], out: Path) -> Path:
    """The demo's JPEG-baseline DICOM with its SOF0 header saying ``size`` (columns, rows)."""
    frame = bytearray(first_frame(pydicom.dcmread(DEMO_JPEG_BASELINE)))
    sof = frame.find(b"\xff\xc0")
    struct.pack_into(">HH", frame, sof + 5, size[1], size[0])
    return with_frame(DEMO_JPEG_BASELINE, bytes(frame), out)


def j2k_claiming(size: tuple[int, int], out: Path) -> Path:
    """pydicom's JPEG2000.dcm with its SIZ header saying ``size`` (columns, rows)."""
    source = testfile("JPEG2000.dcm")
    frame = bytearray(first_frame(pydicom.dcmread(source)))
    struct.pack_into(">II", frame, 8, *size)  # Xsiz, Ysiz (offsets stay 0)
    return with_frame(source, bytes(frame), out)


def _encode(ds: pydicom.Dataset) -> bytes:
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_dataset(buffer, ds)
    return buffer.getvalue()


def deflated_bomb(out: Path, inflated: int = 2 * GIB, where: str = "header") -> Path:
    """MR_small as Deflated Explicit VR Little Endian with ``inflated`` zero bytes inside: as a
    private element before group 0028 (``where="header"``) or as the pixel data (``"pixels"``).

    The zeros are one 16 MiB deflate block repeated: a full flush resets the compressor, so the
    same bytes are valid at every place (2 GiB inflate from about 2 MB, built in milliseconds).
    """
    ds = pydicom.dcmread(testfile("MR_small.dcm"))
    ds.file_meta.TransferSyntaxUID = pydicom.uid.DeflatedExplicitVRLittleEndian
    pixel_bytes = ds.PixelData
    del ds.PixelData
    before = pydicom.Dataset()
    after = pydicom.Dataset()
    for element in ds:
        (before if element.tag < 0x00090000 else after).add(element)
    if where == "header":
        bomb_header = struct.pack("<HH2sHI", 0x0009, 0x1010, b"OB", 0, inflated)
        tail = _encode(after) + struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, len(pixel_bytes)) + pixel_bytes
    else:
        before, after = ds, pydicom.Dataset()
        bomb_header = struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, inflated)
        tail = b""
    chunk = 16 << 20
    assert inflated % chunk == 0
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = compressor.compress(_encode(before) + bomb_header) + compressor.flush(zlib.Z_FULL_FLUSH)
    zeros = compressor.compress(bytes(chunk)) + compressor.flush(zlib.Z_FULL_FLUSH)
    body += zeros * (inflated // chunk) + compressor.compress(tail) + compressor.flush()
    meta = DicomBytesIO()
    meta.is_little_endian, meta.is_implicit_VR = True, False
    write_file_meta_info(meta, ds.file_meta, enforce_standard=True)
    out.write_bytes(b"\0" * 128 + b"DICM" + meta.getvalue() + body)
    return out


# zlib.crc32 over 2**31 zero bytes (1.7 s to compute, so written down).
CRC32_OF_2_GIB_ZEROS = 1304293916


def zip_bomb(out: Path, name: str = "bomb.dcm") -> Path:
    """A 2 MB zip whose one member inflates to 2 GiB of zeros (a valid archive: sizes and CRC true)."""
    chunk = 16 << 20
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    zeros = compressor.compress(bytes(chunk)) + compressor.flush(zlib.Z_FULL_FLUSH)
    data = zeros * (2 * GIB // chunk) + compressor.flush()
    encoded = name.encode()
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, CRC32_OF_2_GIB_ZEROS, len(data),
                        2 * GIB, len(encoded), 0) + encoded
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0x21, CRC32_OF_2_GIB_ZEROS,
                          len(data), 2 * GIB, len(encoded), 0, 0, 0, 0, 0, 0) + encoded
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), len(local) + len(data), 0)
    out.write_bytes(local + data + central + end)
    return out


def big_png(out: Path, side: int = 13000) -> Path:
    """A valid ``side`` x ``side`` grey PNG of zeros (164 KB at 13000: just under Pillow's bomb error)."""
    raw_row = bytes(side + 1)  # filter byte 0, then the row
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(raw_row) for _ in range(side)) + compressor.flush()

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    out.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return out


def good_folder(folder: Path) -> Path:
    """Two good DICOM files (MR and CT) and the demo's JPEG-baseline radiograph."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(testfile("MR_small.dcm"), folder / "mr.dcm")
    shutil.copy(testfile("CT_small.dcm"), folder / "ct.dcm")
    shutil.copy(DEMO_JPEG_BASELINE, folder / "hip.dcm")
    return folder


def run_measured(code: str, *args: str, memory_cap: int = 4 * GIB, timeout: float = 120) -> dict:
    """Run ``code`` in a fresh interpreter (address space capped at ``memory_cap`` so that a
    regression fails instead of exhausting the machine); it must print one JSON object last.
    Adds ``peak_mb``: the child's peak resident memory, its own decoder children included."""
    prologue = (
        "import json, resource, sys\n"
        f"sys.path.insert(0, {str(REPO_ROOT)!r})\n"
    )
    # The peak of this process since exec: Linux's VmHWM (ru_maxrss would also count the pages of
    # the forked test process before exec); its decoder children by ru_maxrss.
    epilogue = (
        "\nimport radreview.studies.isolated as _iso; _iso.shut_down()\n"
        "try:\n"
        "    _self = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:'))\n"
        "except (OSError, StopIteration):\n"
        "    _self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "_peak = max(_self, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024\n"
        "print(json.dumps({**RESULT, 'peak_mb': _peak}))\n"
    )

    def cap() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_cap, memory_cap))

    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run([sys.executable, "-c", prologue + code + epilogue, *args], capture_output=True,
                            text=True, timeout=timeout, preexec_fn=cap if os.name == "posix" else None, env=env)
    if result.returncode != 0:
        raise AssertionError(f"the child failed (rc {result.returncode}):\n{result.stdout}\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])
