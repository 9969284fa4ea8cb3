"""A small least-recently-used cache of decoded frames, bounded by bytes.

Browsing back and forth between a few radiographs must not decode them again, and browsing
hundreds must not keep them all: the cache holds at most ``budget_bytes`` of pixel arrays.
Used on the GUI thread only (workers return results; the window stores them).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

from radreview.studies import DecodedImage

CacheKey = tuple[Path, int]  # (file, frame)


def decoded_nbytes(image: DecodedImage) -> int:
    total = image.pixels.nbytes
    for extra in (image.stored_index, image.value_table):
        if extra is not None:
            total += extra.nbytes
    return total


class DecodedCache:
    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = int(budget_bytes)
        self._items: OrderedDict[CacheKey, DecodedImage] = OrderedDict()
        self._bytes = 0

    def get(self, key: CacheKey) -> DecodedImage | None:
        image = self._items.get(key)
        if image is not None:
            self._items.move_to_end(key)
        return image

    def put(self, key: CacheKey, image: DecodedImage) -> None:
        old = self._items.pop(key, None)
        if old is not None:
            self._bytes -= decoded_nbytes(old)
        self._items[key] = image
        self._bytes += decoded_nbytes(image)
        # Always keep the newest item, even if it alone exceeds the budget.
        while self._bytes > self.budget_bytes and len(self._items) > 1:
            _, evicted = self._items.popitem(last=False)
            self._bytes -= decoded_nbytes(evicted)

    def clear(self) -> None:
        self._items.clear()
        self._bytes = 0

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items
