"""A least-recently-used cache bounded both in entries and in bytes: what keeps streamed segments resident."""

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRUCache(Generic[K, V]):
    """Holds at most `max_items` values and at most `max_bytes` bytes of them (as measured by `size_of`).

    The bounds hold after every call: inserting evicts least-recently-used values first, and a value larger than
    `max_bytes` on its own is returned to the caller but never stored.
    """

    def __init__(
        self,
        max_items: int,
        size_of: Callable[[V], int],
        max_bytes: int | None = None,
        on_evict: Callable[[K, V], None] | None = None,
    ) -> None:
        if max_items < 0 or (max_bytes is not None and max_bytes < 0):
            raise ValueError(
                f"LRUCache: bounds must be >= 0, got max_items={max_items}, max_bytes={max_bytes}"
            )
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._size_of = size_of
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self.nbytes = 0
        """Bytes held now."""
        self._on_evict = on_evict
        """Called with each evicted entry (e.g. to write back a modified value); not called by `clear`."""
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: K) -> bool:
        return key in self._entries

    def keys(self) -> list[K]:
        """Keys from least to most recently used."""
        return list(self._entries)

    def get(self, key: K, load: Callable[[], V]) -> V:
        """The value for `key`, calling `load()` on a miss (and caching its result when it fits)."""
        if key in self._entries:
            self._entries.move_to_end(key)
            self.hits += 1
            return self._entries[key][0]
        self.misses += 1
        value = load()
        size = self._size_of(value)
        if self.max_items == 0 or (self.max_bytes is not None and size > self.max_bytes):
            return value
        self._make_room(1, size)
        self._entries[key] = (value, size)
        self.nbytes += size
        return value

    def _make_room(self, items: int, size: int) -> None:
        """Evict least-recently-used entries until `items` more entries of `size` bytes in all fit."""
        while self._entries and (
            len(self._entries) + items > self.max_items
            or (self.max_bytes is not None and self.nbytes + size > self.max_bytes)
        ):
            old_key, (old_value, evicted) = self._entries.popitem(last=False)
            self.nbytes -= evicted
            if self._on_evict is not None:
                self._on_evict(old_key, old_value)

    def put(self, key: K, value: V) -> None:
        """Replace the cached value of `key` (which must be cached) and mark it most recently used; a value larger
        than `max_bytes` on its own is evicted at once (`on_evict` is called with it)."""
        _, size = self._entries.pop(key)
        self.nbytes -= size
        size = self._size_of(value)
        if self.max_bytes is not None and size > self.max_bytes:
            if self._on_evict is not None:
                self._on_evict(key, value)
            return
        self._make_room(1, size)
        self._entries[key] = (value, size)
        self.nbytes += size

    def items(self) -> list[tuple[K, V]]:
        """Cached (key, value) pairs from least to most recently used."""
        return [(k, v) for k, (v, _) in self._entries.items()]

    def clear(self) -> None:
        self._entries.clear()
        self.nbytes = 0
