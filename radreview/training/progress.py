"""A tqdm bar behind the ``progress(done, total)`` callback, for the command line."""

from __future__ import annotations

from tqdm import tqdm


class TqdmProgress:
    """Callable progress; starts a new bar whenever the total changes (a new phase)."""

    def __init__(self, description: str = "") -> None:
        self.description = description
        self.bar: tqdm | None = None
        self.total = -1

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None or total != self.total or done < self.bar.n:
            self.close()
            self.bar = tqdm(total=total, desc=self.description, unit="it", dynamic_ncols=True)
            self.total = total
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
