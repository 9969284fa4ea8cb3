"""The names other packages code against (viewer, inference, training) stay importable and typed."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

import radreview.studies as studies


def test_the_contract_is_exported():
    for name in (
        "index_paths", "decode_image", "render_display", "header_attributes", "key_attributes",
        "bone_window", "soft_tissue_window", "demo_dir", "DecodedImage", "Window", "StudyLoadError",
        "LoadProblem", "StudyIndex", "ImageEntry", "Patient", "Study", "Series",
    ):
        assert name in studies.__all__ and hasattr(studies, name)


def test_signatures():
    assert list(inspect.signature(studies.index_paths).parameters) == ["paths", "progress", "cancel"]
    assert list(inspect.signature(studies.decode_image).parameters) == ["entry", "frame"]
    assert list(inspect.signature(studies.render_display).parameters) == ["image", "window", "invert"]


def test_decoded_image_and_window_fields():
    fields = {f.name for f in dataclasses.fields(studies.DecodedImage)}
    assert {
        "pixels", "photometric", "windows", "presentation_lut_shape", "pixel_spacing", "spacing_source",
        "frame", "number_of_frames", "bits_stored", "path",
    } <= fields
    window = studies.Window(40, 400)
    assert (window.center, window.width, window.function, window.name) == (40, 400, "LINEAR", "")
    with pytest.raises(dataclasses.FrozenInstanceError):
        window.center = 1  # type: ignore[misc]


def test_study_load_error_names_file_and_reason(tmp_path):
    error = studies.StudyLoadError(tmp_path / "x.dcm", "file is truncated")
    assert isinstance(error, Exception)
    assert str(error) == f"{tmp_path / 'x.dcm'}: file is truncated"
    assert error.as_problem() == studies.LoadProblem(tmp_path / "x.dcm", "file is truncated")


def test_person_name_is_shown_as_written(pydicom_data_file) -> None:
    """A PersonName is one value: it must not be split into characters joined by backslashes."""
    from radreview.studies import index_paths, key_attributes

    entry = index_paths([pydicom_data_file("RG3_UNCR.dcm")]).images()[0]
    assert key_attributes(entry)["Patient name"] == "CompressedSamples^RG3"
