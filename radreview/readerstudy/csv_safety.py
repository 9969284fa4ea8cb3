"""Spreadsheet-safe CSV cells.

A spreadsheet opening a CSV runs a cell that begins with ``=``, ``+``, ``-`` or ``@`` (and, in
some programs, one that begins with a tab or a carriage return) as a formula: a reader comment
``=HYPERLINK(...)`` in ``reads.csv`` would become a live link. :func:`neutralise_cell` puts a
single quote in front of such text, which every spreadsheet shows as text (OWASP's "CSV
injection" advice). The same rule is kept in ``radreview/csv_safety.py`` for the other CSV
writers; the lead merges the two.

Only text is changed: numbers (a negative number is not a formula) and empty cells pass through.
"""

from __future__ import annotations

from typing import Any

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralise_cell(value: Any) -> Any:
    """``value`` with a leading ``'`` if it is text a spreadsheet would run as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value
