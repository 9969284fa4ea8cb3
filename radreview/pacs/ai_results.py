"""AI results of a batch run (``radreview predict``) written as DICOM: one SR per study, and
optionally one secondary capture per heatmap, named by the run's pseudonymous IDs
(``S00001_SR.dcm``, ``S00001-I001_<model>_<label>_SC.dcm``).

Images that cannot be referenced by an SR (PNG/JPEG, DICOM without UIDs) are left out with a
message naming them; a study with none left gets no SR.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.uid import generate_uid

from radreview.inference.batch import BatchResult, ImageRecord, OverlayStyle, overlay_image, shows_heatmap
from radreview.inference.engine import ImageResult
from radreview.pacs.errors import SrError
from radreview.pacs.sr import SourceImage, build_heatmap_capture, build_sr, check_source, write_dataset

log = logging.getLogger(__name__)


def present(result: ImageResult):
    """The one presentation of an image's AI answer (tiers, scope, verdict, texts)."""
    from radreview.inference.presentation import present_image

    return present_image(result)


@dataclass
class ReportFiles:
    files: list[Path] = field(default_factory=list)  # SRs and secondary captures written
    problems: list[str] = field(default_factory=list)  # images or studies left out, and why


def _header(record: ImageRecord):
    """The source's DICOM header, or None when the file is not DICOM."""
    try:
        return pydicom.dcmread(record.path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, AttributeError):
        return None


def _gray(record: ImageRecord):
    from radreview.inference.fast_decode import display_gray
    from radreview.studies import index_paths

    entries = index_paths([record.path]).images()
    if not entries:
        raise SrError(f"{record.image_id}: the image can no longer be read for its heatmap")
    return display_gray(entries[0])  # the grey the models took, as predict decoded it


def write_study_reports(batch: BatchResult, out_dir: str | Path, heatmaps: bool = False,
                        style: OverlayStyle = OverlayStyle(), cancel: Callable[[], bool] | None = None) -> ReportFiles:
    """Write an SR per study of ``batch`` (and heatmap captures) into ``out_dir``."""
    out = ReportFiles()
    out_dir = Path(out_dir)
    by_study: dict[str, list[ImageRecord]] = {}
    for record in batch.images:
        if record.result is not None:
            by_study.setdefault(record.study_id, []).append(record)
    for study_id, records in by_study.items():
        if cancel is not None and cancel():
            break
        sources: list[SourceImage] = []
        for record in records:
            name = f"{record.image_id} ({record.path.name})"
            try:
                header = check_source(_header(record), name)
            except SrError as exc:
                out.problems.append(str(exc))
                continue
            sources.append(SourceImage(header, present(record.result), name))
        if not sources:
            out.problems.append(f"{study_id}: no SR written: none of its images can be referenced by one")
            continue
        try:
            sr = build_sr(sources)
        except SrError as exc:
            out.problems.append(f"{study_id}: {exc}")
            continue
        out.files.append(write_dataset(sr, out_dir / f"{study_id}_SR.dcm"))
        if heatmaps:
            out.files += _captures(study_id, records, sources, out_dir, style, out)
    return out


def _captures(study_id, records, sources, out_dir, style, out) -> list[Path]:
    written: list[Path] = []
    series_uid = generate_uid()
    number = 0
    usable = {source.name: source for source in sources}
    for record in records:
        source = usable.get(f"{record.image_id} ({record.path.name})")
        if source is None or source.presentation.in_scope is False:
            continue  # an image outside the models' scope gets no heatmap shown as an answer
        drawn = [(lab, legend) for lab in record.result.labels
                 if lab.cam is not None and shows_heatmap(lab) and (legend := style.legend(lab)).drawn]
        if not drawn:
            continue
        try:
            gray = _gray(record)
            full = pydicom.dcmread(record.path)  # the capture copies patient/study from the source
        except Exception as exc:  # noqa: BLE001 - one unreadable image must not stop the others
            out.problems.append(f"{record.image_id}: no heatmap capture: {exc}")
            continue
        findings = {(f.model, f.label): f for f in (*source.presentation.findings, *source.presentation.regions)}
        for label, legend in drawn:
            shown = findings.get((label.model, label.label))
            if shown is not None and not shown.shown:
                continue  # its model calls the image outside its scope: no heatmap as an answer
            rgb = overlay_image(gray, label, style, legend=legend)
            if rgb is None:
                continue
            answer = shown.probability_text if shown is not None else f"{label.probability:.3f}"
            tier = (shown.tier_text if shown is not None else label.tier) or ""
            caption = f"{label.display_name} heatmap: {answer}" + (f" ({tier})" if tier else "") + \
                      f"; {label.model} {label.version}"
            number += 1
            sc = build_heatmap_capture(full, rgb, caption, series_uid, number, record.image_id)
            written.append(write_dataset(sc, out_dir / f"{record.image_id}_{label.model}_{label.label}_SC.dcm"))
    return written
