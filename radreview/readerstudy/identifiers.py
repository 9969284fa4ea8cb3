"""What a reader code, a case id, a study name or a label may contain, checked when it is added.

Identifiers end up in file formats that other programs parse: the iMRMC file's header lists the
reader codes one per line before ``BEGIN DATA:``, the MRMC long format is read by R, the tidy CSV
by spreadsheets. A newline in a reader code would write a forged line into the iMRMC file, and a
leading ``=`` would make a spreadsheet run it. So identifiers come from a small safe set
(ASCII letters and digits first, then a few punctuation marks) with a bounded length; free text
(the question, sides, regions, model and label names) may hold anything printable but no control
characters. Because identifiers are safe by construction, the analysis formats are written
exactly, without escaping (see ``export.py``).
"""

from __future__ import annotations

import re

READER_CODE_MAX = 32
CASE_ID_MAX = 100
READER_CODE = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{READER_CODE_MAX - 1}}}")
# Case ids are the coordinator's own (accession-like) identifiers: a space, ':', '/' and '#' occur
# in real ones. Never a leading punctuation mark (so never a formula), never a trailing space.
CASE_ID = re.compile(rf"[A-Za-z0-9](?:[A-Za-z0-9 ._:/#-]{{0,{CASE_ID_MAX - 2}}}[A-Za-z0-9._:/#-])?")


class IdentifierError(ValueError):
    """An identifier or a text outside its allowed set; the message says what is allowed."""


def _shown(value: str) -> str:
    # repr() shows newlines and control characters as escapes; long values are cut.
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "...'"


def check_reader_code(code: str) -> str:
    """``code`` if it is a valid reader code, else :class:`IdentifierError`."""
    if not isinstance(code, str) or READER_CODE.fullmatch(code) is None:
        raise IdentifierError(
            f"reader id {_shown(str(code))} is not allowed: use 1-{READER_CODE_MAX} ASCII letters, "
            "digits, '.', '_' or '-', starting with a letter or digit"
        )
    return code


def is_reader_code(code: str) -> bool:
    return isinstance(code, str) and READER_CODE.fullmatch(code) is not None


def check_case_id(case_id: str) -> str:
    """``case_id`` if it is a valid case id, else :class:`IdentifierError`."""
    if not isinstance(case_id, str) or CASE_ID.fullmatch(case_id) is None:
        raise IdentifierError(
            f"case id {_shown(str(case_id))} is not allowed: use 1-{CASE_ID_MAX} ASCII letters, digits, "
            "spaces and . _ - : / #, starting and ending with a letter or digit (or . _ - : / #)"
        )
    return case_id


def check_text(value: str, what: str, max_length: int) -> str:
    """Free text: printable characters only (no newline, tab or other control character), bounded."""
    if not isinstance(value, str):
        raise IdentifierError(f"{what} must be text, not {type(value).__name__}")
    if len(value) > max_length:
        raise IdentifierError(f"{what} {_shown(value)} is longer than {max_length} characters")
    if not value.isprintable():
        raise IdentifierError(f"{what} {_shown(value)} contains a newline or another control character")
    return value


def safe_for_analysis_files(value: str) -> bool:
    """Whether ``value`` can be written unescaped into the iMRMC and MRMC long files.

    New identifiers always can (they are validated when added); this guards databases made
    before validation existed: no control characters, no comma, no formula prefix.
    """
    return (
        isinstance(value, str) and value != "" and value.isprintable() and "," not in value
        and not value.startswith(("=", "+", "-", "@"))
    )
