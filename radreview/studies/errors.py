"""The one exception the studies package raises for a file it cannot open."""

from __future__ import annotations

from pathlib import Path

from radreview.studies.model import LoadProblem


class StudyLoadError(Exception):
    """A file could not be read or decoded; ``str()`` names the file and the reason."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason

    def as_problem(self) -> LoadProblem:
        return LoadProblem(self.path, self.reason)
