"""Cells that are safe to open in a spreadsheet, and text that is safe to write as UTF-8.

- Formula injection (OWASP "CSV Injection"): a cell that starts with ``=``, ``+``, ``-``, ``@``,
  a tab or a carriage return is run as a formula by Excel, LibreOffice and Google Sheets
  (``=HYPERLINK(...)``, ``=cmd|...``). :func:`neutralise` prefixes such text with a single quote,
  which spreadsheets show as text and do not run. Numbers are left alone (``-0.5`` stays a number).
- File names are bytes on POSIX; Python hands undecodable ones over as lone surrogates
  (PEP 383), which no UTF-8 writer accepts. :func:`escape_undecodable` writes those bytes as
  ``\\xNN`` escapes, so the name stays recognisable and the file stays valid UTF-8.

Pure Python, no Qt: every export (predict, reader-study CSVs) uses the same rules.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Mapping
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def escape_undecodable(text: str) -> str:
    """``text`` with undecodable file-name bytes (surrogate escapes) written as ``\\xNN``."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that is not an escaped byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def path_text(path: str | os.PathLike[str]) -> str:
    """A path as text that any UTF-8 writer accepts (see :func:`escape_undecodable`)."""
    return escape_undecodable(os.fspath(path))


def neutralise(value: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula, prefixed with ``'``; other values as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def safe_cell(value: Any) -> Any:
    """Both rules for one cell: undecodable bytes escaped, formulas neutralised (text only)."""
    if isinstance(value, str):
        return neutralise(escape_undecodable(value))
    return value


def safe_row(row: Mapping[str, Any]) -> dict[str, Any]:
    return {key: safe_cell(value) for key, value in row.items()}


class SafeDictWriter(csv.DictWriter):
    """:class:`csv.DictWriter` whose every text cell goes through :func:`safe_cell`."""

    def writerow(self, rowdict: Mapping[str, Any]) -> Any:
        return super().writerow(safe_row(rowdict))

    def writerows(self, rowdicts: Iterable[Mapping[str, Any]]) -> None:
        for row in rowdicts:
            self.writerow(row)


class SafeWriter:
    """:func:`csv.writer` for lists of cells, every text cell through :func:`safe_cell`."""

    def __init__(self, handle: Any, **options: Any) -> None:
        self._writer = csv.writer(handle, **options)

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._writer.writerow([safe_cell(value) for value in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)
