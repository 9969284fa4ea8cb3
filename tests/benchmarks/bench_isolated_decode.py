"""What decoding gdcm's syntaxes in a child process costs, per image, against gdcm in-process.

radreview decodes JPEG Lossless and JPEG-LS with gdcm in a child process
(radreview/studies/isolated.py), because gdcm aborts the process on damaged data. This prints,
for a 1760x1760 CR transcoded to each syntax with gdcm itself:
- the one-off start of a child (spawn + imports);
- ``decode_image`` per image with a warm child, against ``pixel_array(decoding_plugin="gdcm")``
  in this process (the unsafe baseline) measured in the same run;
- for the syntaxes that stay in-process (JPEG 2000 via pylibjpeg, JPEG baseline via Pillow) the
  same comparison against gdcm, which pydicom used to try first.
Asserts nothing about time. Usage: ``.venv/bin/python tests/benchmarks/bench_isolated_decode.py``
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from pydicom.data import get_testdata_file


def transcode(source: str, syntax, out: Path) -> Path:  # noqa: ANN001 - a gdcm.TransferSyntax enum
    from radreview.smoke_test import gdcm_transcode

    gdcm_transcode(Path(source), out, syntax)
    return out


def per_image(function, repeats: int = 15) -> float:  # noqa: ANN001
    """The fastest of ``repeats`` runs: on a shared machine the minimum is the least noisy figure."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    import gdcm
    from pydicom.pixels import pixel_array

    from radreview.studies import decode_image, demo_dir, index_paths, isolated, pixels

    isolated.shut_down()
    start = time.perf_counter()
    child = isolated._Child()
    try:
        child.call(("ping", None, ""), 60)
    except isolated.DecoderError:
        pass  # the answer to an unknown request: the child is up
    print(f"child process start (spawn, imports, first answer): {(time.perf_counter() - start) * 1000:.0f} ms, once")
    child.stop()

    def gdcm_here(dataset, plugin, timeout=None):  # noqa: ANN001, ANN202 - the unsafe baseline
        return pixel_array(dataset, index=0, decoding_plugin=plugin)

    isolated_call, preferred = isolated.decode_frame, dict(pixels.IN_PROCESS_PLUGINS)
    with tempfile.TemporaryDirectory() as tmp:
        source = get_testdata_file("RG3_UNCR.dcm")
        cases = [
            ("JPEG Lossless SV1 1760x1760 (gdcm in a child)", transcode(
                source, gdcm.TransferSyntax.JPEGLosslessProcess14_1, Path(tmp) / "ll.dcm")),
            ("JPEG-LS lossless 1760x1760 (gdcm in a child)", transcode(
                source, gdcm.TransferSyntax.JPEGLSLossless, Path(tmp) / "ls.dcm")),
            ("JPEG 2000 lossless 1760x1760 (pylibjpeg here)", Path(get_testdata_file("RG3_J2KR.dcm"))),
            ("JPEG baseline 1024x819 (Pillow here)", demo_dir() / "DEMO_HIP" / "IMG0000097.dcm"),
        ]
        for name, path in cases:
            entry = index_paths([path]).images()[0]
            ours = per_image(lambda: decode_image(entry))
            # The same decode_image with gdcm called in this process, as pydicom's default order did.
            isolated.decode_frame = gdcm_here
            pixels.IN_PROCESS_PLUGINS.clear()
            try:
                baseline = per_image(lambda: decode_image(entry))
            finally:
                isolated.decode_frame = isolated_call
                pixels.IN_PROCESS_PLUGINS.update(preferred)
            print(f"{name}: decode_image {ours * 1000:.1f} ms/image; with gdcm in this process "
                  f"{baseline * 1000:.1f} ms; difference {(ours - baseline) * 1000:+.1f} ms, ratio {ours / baseline:.2f}x")
    isolated.shut_down()


if __name__ == "__main__":
    main()
