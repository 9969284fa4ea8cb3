"""AI results as DICOM: a Comprehensive SR (TID 1500 measurement report) per study, and optional
secondary captures of the heatmaps with the research-use notice burned in (highdicom).

The SR references its source images (by SOP class and instance UID) and carries their patient
and study modules, as it must to be filed beside them; it is written only where a user asks.
Per image and label it holds one measurement group (TID 1501):

- finding type: the label, coded (SNOMED CT where the concept is standard and verified from the
  DICOM code tables shipped with pydicom/highdicom, else a private ``99RADRV`` code);
- measurement "Probability" (DCM 122157, unit UCUM ``1``) with the model as TID 4019 algorithm
  identification (name, version; its parameters hold the tier cut-offs and the notice);
- qualitative evaluations: the operating-point tier (private codes) and whether the image is
  within the model's scope (SCT Yes/No).

and one group per image with the overall verdict. What is shown (tiers, scope, verdict, texts)
comes from one place, :func:`radreview.inference.presentation.present_image`, like the AI panel
and the exports; nothing is decided here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
from highdicom.sr import CodedConcept
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from radreview import RESEARCH_USE_NOTICE, __version__
from radreview.inference.heatmap_files import HEATMAP_SERIES_DESCRIPTION
from radreview.pacs.errors import SrError, short_uid

log = logging.getLogger(__name__)
# highdicom says at INFO level which modules it copies from the source, once per object.
logging.getLogger("highdicom").setLevel(logging.WARNING)

PRIVATE_SCHEME = "99RADRV"  # "99" prefix: a private coding scheme (PS3.16 8.1)
SR_SERIES_NUMBER = 9900
SC_SERIES_NUMBER = 9901
SERIES_DESCRIPTION = "radreview AI results (research use only)"
UNITLESS = CodedConcept("1", "UCUM", "no units")
TIER_NAME = CodedConcept("tier", PRIVATE_SCHEME, "AI operating-point tier")
IN_SCOPE_NAME = CodedConcept("in-scope", PRIVATE_SCHEME, "Image within the model's scope")
VERDICT_NAME = CodedConcept("verdict", PRIVATE_SCHEME, "AI overall answer for the image")
TIER_VALUES = {
    "likely": CodedConcept("likely", PRIVATE_SCHEME, "Likely: at or above the high-specificity point"),
    "possible": CodedConcept("possible", PRIVATE_SCHEME, "Possible: at or above the sensitive point"),
    "below": CodedConcept("below", PRIVATE_SCHEME, "Below the label's operating points"),
    "out_of_scope": CodedConcept("out-of-scope", PRIVATE_SCHEME, "Not answered: image outside the scope"),
}
VERDICT_VALUES = {
    "positive": CodedConcept("positive", PRIVATE_SCHEME, "AI positive"),
    "doubt": CodedConcept("doubt", PRIVATE_SCHEME, "AI in doubt"),
    "negative": CodedConcept("negative", PRIVATE_SCHEME, "AI negative"),
    "out_of_scope": CodedConcept("out-of-scope", PRIVATE_SCHEME, "Image outside the models' scope"),
    "none": CodedConcept("none", PRIVATE_SCHEME, "No AI answer"),
}
# Standard concepts, each checked against pydicom's DICOM code dictionary or highdicom's
# anatomic region table (fracture of bone is SNOMED CT 125605004, the one not in either).
FINDING_CODES: dict[str, CodedConcept] = {
    "fracture": CodedConcept("125605004", "SCT", "Fracture of bone"),
    "hardware": CodedConcept(codes.SCT.OrthopedicDevice.value, "SCT", codes.SCT.OrthopedicDevice.meaning),
    "abnormality": CodedConcept(codes.SCT.Abnormal.value, "SCT", codes.SCT.Abnormal.meaning),
}
REGION_CODES: dict[str, CodedConcept] = {
    "hand": CodedConcept(codes.SCT.Hand.value, "SCT", codes.SCT.Hand.meaning),
    "hip": CodedConcept(codes.SCT.Hip.value, "SCT", codes.SCT.Hip.meaning),
    "shoulder": CodedConcept(codes.SCT.Shoulder.value, "SCT", codes.SCT.Shoulder.meaning),
    "leg": CodedConcept("61685007", "SCT", "Lower limb"),
}
OVERALL_FINDING = CodedConcept("ai-answer", PRIVATE_SCHEME, "AI answer for the image")
REQUIRED_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")


def finding_code(task: str, label: str, display_name: str = "") -> CodedConcept:
    if task == "region" and label in REGION_CODES:
        return REGION_CODES[label]
    if task in FINDING_CODES:
        return FINDING_CODES[task]
    meaning = (display_name or label)[:64]
    return CodedConcept(f"{task}.{label}"[:16], PRIVATE_SCHEME, meaning)


def check_source(ds: Dataset | None, name: str) -> Dataset:
    """``ds``, or SrError naming the image when it cannot be referenced by an SR."""
    if ds is None:
        raise SrError(f"{name}: cannot write a DICOM SR for it: it is not a DICOM file (an SR references "
                      "its source images by their DICOM UIDs)")
    missing = [k for k in REQUIRED_UIDS if not str(ds.get(k, "") or "").strip()]
    if missing:
        raise SrError(f"{name}: cannot write a DICOM SR for it: the image has no {', '.join(missing)} "
                      "(an SR references its source images by these UIDs)")
    return ds


@dataclass
class SourceImage:
    """One analysed image: its DICOM header (no pixels needed) and what the AI said about it."""

    dataset: Dataset
    presentation: Any  # radreview.inference.presentation.ImagePresentation
    name: str = ""  # how messages name it: a pseudonymous image ID or a file name


def _text(value: object, limit: int = 1024) -> str:
    return str(value or "").strip()[:limit]


def _groups(image: SourceImage, number: int) -> list:
    p = image.presentation
    ds = image.dataset
    source = [hd.sr.SourceImageForMeasurementGroup(str(ds.SOPClassUID), str(ds.SOPInstanceUID))]
    notice = f"notice: {p.notice or RESEARCH_USE_NOTICE}"
    groups = []
    for finding in (*p.findings, *p.regions):
        parameters = [notice]
        for prefix, text in (("operating points", finding.cutoffs_text), ("note", getattr(finding, "note", ""))):
            if _text(text) and not (prefix == "note" and text == finding.cutoffs_text):
                parameters.append(f"{prefix}: {_text(text)}")
        algorithm = hd.sr.AlgorithmIdentification(name=_text(finding.model, 64), version=_text(finding.version, 64),
                                                  parameters=parameters)
        evaluations = []
        tier_value = TIER_VALUES.get(finding.tier)
        if tier_value is not None:
            evaluations.append(hd.sr.QualitativeEvaluation(TIER_NAME, tier_value))
        if finding.in_scope is not None:
            evaluations.append(hd.sr.QualitativeEvaluation(IN_SCOPE_NAME, codes.SCT.Yes if finding.in_scope else codes.SCT.No))
        measurements = []
        # An image outside a model's scope gets no probability reported as if it were an answer.
        if finding.shown and finding.probability is not None and np.isfinite(finding.probability):
            measurements.append(hd.sr.Measurement(name=codes.DCM.Probability, value=float(finding.probability),
                                                  unit=UNITLESS))
        groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(
                uid=generate_uid(), identifier=f"image {number} {finding.model}/{finding.label}"[:64]),
            finding_type=finding_code(finding.task, finding.label, finding.display_name),
            algorithm_id=algorithm,
            measurements=measurements or None,
            qualitative_evaluations=evaluations or None,
            source_images=source,
        ))
    verdict = VERDICT_VALUES.get(p.verdict or "none", VERDICT_VALUES["none"])
    evaluations = [hd.sr.QualitativeEvaluation(VERDICT_NAME, verdict)]
    if p.in_scope is not None:
        evaluations.append(hd.sr.QualitativeEvaluation(IN_SCOPE_NAME, codes.SCT.Yes if p.in_scope else codes.SCT.No))
    parameters = [notice]
    for prefix, text in (("answer", p.verdict_text), ("regions", p.region_line), ("scope", p.scope_text)):
        if _text(text):
            parameters.append(f"{prefix}: {_text(text)}")
    parameters += [f"scope: {_text(line.text)}" for line in p.scopes if _text(line.text) != _text(p.scope_text)]
    groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=f"image {number} AI answer"),
        finding_type=OVERALL_FINDING,
        algorithm_id=hd.sr.AlgorithmIdentification(name="radreview", version=__version__, parameters=parameters),
        qualitative_evaluations=evaluations,
        source_images=source,
    ))
    return groups


def _report(device, groups: list, datasets: list[Dataset]):
    """The TID 1500 report, with an image library (TID 1600) when highdicom can describe every
    image: for radiographs it needs Imager Pixel Spacing, which many files lack, and the library
    is left out rather than filled with guesses (the groups still reference each image)."""
    kwargs = dict(observation_context=hd.sr.ObservationContext(observer_device_context=device),
                  procedure_reported=codes.SCT.PlainRadiography, imaging_measurements=groups)
    try:
        return hd.sr.MeasurementReport(**kwargs, referenced_images=datasets)
    except (AttributeError, ValueError, TypeError) as exc:
        log.debug("SR without an image library (%s)", exc)
        return hd.sr.MeasurementReport(**kwargs)


def build_sr(images: Sequence[SourceImage], series_uid: str | None = None, instance_number: int = 1) -> Dataset:
    """One Comprehensive SR for the images of one study; SrError when it cannot be written."""
    if not images:
        raise SrError("no image to report on")
    for image in images:
        check_source(image.dataset, image.name or "image")
    studies = {str(i.dataset.StudyInstanceUID) for i in images}
    if len(studies) > 1:
        raise SrError(f"one SR reports on one study; these images belong to {len(studies)} studies")
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(), name="radreview", manufacturer_name="radreview",
            model_name=", ".join(sorted({_text(f.model) for i in images
                                         for f in (*i.presentation.findings, *i.presentation.regions)}))[:64] or None,
        ),
    )
    groups = [g for number, image in enumerate(images, start=1) for g in _groups(image, number)]
    report = _report(device, groups, [i.dataset for i in images])
    sr = hd.sr.ComprehensiveSR(
        evidence=[i.dataset for i in images],
        content=report,
        series_instance_uid=series_uid or generate_uid(),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=generate_uid(),
        instance_number=instance_number,
        manufacturer="radreview",
        is_complete=True,
        is_final=False,  # a machine's preliminary output, never verified by a person
        is_verified=False,
    )
    if not _encodable(sr, sr.get("SpecificCharacterSet", "")):
        sr.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: model texts may hold e.g. "≥"
    sr.SeriesDescription = SERIES_DESCRIPTION
    sr.SoftwareVersions = __version__
    log.debug("built SR %s for study %s (%d images)", short_uid(sr.SOPInstanceUID), short_uid(next(iter(studies))),
              len(images))
    return sr


def _encodable(ds: Dataset, charset: object) -> bool:
    """Whether every text value of ``ds`` fits its character set (default repertoire or Latin-1)."""
    codec = "latin-1" if "ISO_IR 100" in str(charset) else "ascii"
    ok = True

    def visit(dataset: Dataset, element) -> None:
        nonlocal ok
        value = element.value
        values = value if isinstance(value, list | tuple) else [value]
        for item in values:
            if isinstance(item, str):
                try:
                    item.encode(codec)
                except UnicodeEncodeError:
                    ok = False

    ds.walk(visit)
    return ok


def burn_in_notice(rgb: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """The image with a black band on top holding ``lines`` in yellow (RGB uint8)."""
    from PIL import Image, ImageDraw, ImageFont

    height, width = rgb.shape[:2]
    size = max(12, width // 48)
    try:
        font = ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        font = ImageFont.load_default()
    band = int(size * 1.4) * len(lines) + size // 2
    canvas = Image.new("RGB", (width, height + band), (0, 0, 0))
    canvas.paste(Image.fromarray(rgb), (0, band))
    draw = ImageDraw.Draw(canvas)
    for n, line in enumerate(lines):
        draw.text((size // 2, size // 4 + n * int(size * 1.4)), line, fill=(255, 210, 0), font=font)
    return np.asarray(canvas)


def build_heatmap_capture(source: Dataset, rgb: np.ndarray, caption: str, series_uid: str,
                          instance_number: int, name: str = "") -> Dataset:
    """A secondary capture of one heatmap overlay, the notice and ``caption`` burned in."""
    check_source(source, name or "image")
    pixels = burn_in_notice(np.ascontiguousarray(rgb[..., :3], dtype=np.uint8),
                            [RESEARCH_USE_NOTICE.upper(), caption])
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source,
        pixel_array=pixels,
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        patient_orientation=("A", "F"),  # replaced below by the source's own value
        series_instance_uid=series_uid,
        series_number=SC_SERIES_NUMBER,
        sop_instance_uid=generate_uid(),
        instance_number=instance_number,
        manufacturer="radreview",
        transfer_syntax_uid="1.2.840.10008.1.2.1",
    )
    # The overlay keeps the source's geometry (not rotated or flipped), so its orientation is the
    # source's, copied as it is; empty (type 2: unknown) when the source has none.
    sc.PatientOrientation = source.get("PatientOrientation", "") or ""
    sc.BurnedInAnnotation = "YES"
    sc.SeriesDescription = HEATMAP_SERIES_DESCRIPTION  # predict leaves this series out
    sc.ImageComments = f"{caption}. {RESEARCH_USE_NOTICE}"[:10240]
    sc.DerivationDescription = "class-activation heatmap blended over the displayed radiograph"[:1024]
    sc.SoftwareVersions = __version__
    source_item = Dataset()
    source_item.ReferencedSOPClassUID = source.SOPClassUID
    source_item.ReferencedSOPInstanceUID = source.SOPInstanceUID
    sc.SourceImageSequence = [source_item]
    return sc


def write_dataset(ds: Dataset, path: Path) -> Path:
    """Save as a DICOM file, atomically (temporary name, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        ds.save_as(tmp, enforce_file_format=True)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
