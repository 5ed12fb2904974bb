"""Each card's (terminal's) transactions in time order with running sums, kept up to date one batch at a time.

The fraud stream's window features (`features.customer_spending_in`, `terminal_risk_in`) are then found by
binary search in the card's (terminal's) own timeline, whatever the size of the history: the cost of a
transaction does not grow with how much history the windows hold, where sorting the batch's cards' histories
again for every batch (`customer_spending`, the batch path) does.

All timelines share flat columns ("the slab"): key k owns the slots [start[k], start[k] + capacity[k]], its
`size[k]` entries first, ordered by (instant, tie). `running[start + j]` is the sum of the key's values before
its j-th entry, from some base (only differences are read), so a window's sum is two reads. A batch that only
appends to its keys (the usual case: a card's transactions come in time order) is written in a few vectorised
steps; a key whose new entries go before its last one, or which is full, is rewritten alone (trimmed of what no
window reaches, moved to the end with twice the room). When the slab is full, it is rebuilt without the holes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

_MIN_CAPACITY = 16


class Timelines:
    def __init__(self, slab: int = 1 << 16) -> None:
        self._instant = np.zeros(slab, dtype=np.int64)
        self._tie = np.zeros(slab, dtype=np.int64)
        self._value = np.zeros(slab, dtype=np.float64)
        self._running = np.zeros(slab, dtype=np.float64)
        self._end = 0  # slots from here on are free
        self._start = np.zeros(0, dtype=np.int64)
        self._size = np.zeros(0, dtype=np.int64)
        self._capacity = np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        """The entries held (those no window reaches any more included, until their key is rewritten)."""
        return int(self._size.sum())

    def add(
        self,
        key: np.ndarray,
        instant: np.ndarray,
        tie: np.ndarray,
        value: np.ndarray,
        expired: Callable[[], int],
    ) -> None:
        """Add entries (keys are small non-negative integers; an entry is added once: the caller dedupes).
        `expired()`: the instant at and before which no window reaches; called only when room is needed."""
        if len(key) == 0:
            return
        self._ensure_keys(int(key.max()) + 1)
        order = np.lexsort((tie, instant, key))
        key, instant, tie, value = key[order], instant[order], tie[order], value[order]
        keys, first, count = np.unique(key, return_index=True, return_counts=True)
        last = self._start[keys] + self._size[keys] - 1
        empty = self._size[keys] == 0
        after_last = empty | (instant[first] > self._instant[last])
        after_last |= ~empty & (instant[first] == self._instant[last]) & (tie[first] > self._tie[last])
        fits = self._size[keys] + count <= self._capacity[keys]
        for way, groups in ((self._append, after_last & fits), (self._merge, ~after_last & fits)):
            if groups.any():
                rows = np.repeat(groups, count)
                way(keys[groups], count[groups], instant[rows], tie[rows], value[rows])
        expired_at = functools.cache(expired)  # asked once at most
        for group in np.flatnonzero(~fits).tolist():
            rows = slice(first[group], first[group] + count[group])
            self._rewrite(int(keys[group]), instant[rows], tie[rows], value[rows], expired_at)

    def first_after(self, key: np.ndarray, limit: np.ndarray) -> np.ndarray:
        """For each (key, limit): the slot of the key's first entry with instant > limit (its end if none)."""
        return self._search(key, lambda slot: self._instant[slot] <= limit)

    def end_of(self, key: np.ndarray, instant: np.ndarray, tie: np.ndarray) -> np.ndarray:
        """For each entry (key, instant, tie): the slot after it, and after all those ordered before it."""

        def at_or_before(slot: np.ndarray) -> np.ndarray:
            at = self._instant[slot]
            return (at < instant) | ((at == instant) & (self._tie[slot] <= tie))

        return self._search(key, at_or_before)

    def total(self, start: np.ndarray, end: np.ndarray) -> np.ndarray:
        """The sum of the values in the slots [start, end) of one key each."""
        return self._running[end] - self._running[start]

    def set_value(self, key: int, instant: int, tie: int, value: float) -> bool:
        """Set an entry's value; False if there is no such entry."""
        slot = int(self.end_of(np.array([key]), np.array([instant]), np.array([tie]))[0]) - 1
        start, size = int(self._start[key]), int(self._size[key])
        if slot < start or self._instant[slot] != instant or self._tie[slot] != tie:
            return False
        self._value[slot] = value
        self._running[start + 1 : start + size + 1] = self._running[start] + np.cumsum(
            self._value[start : start + size]
        )
        return True

    def _search(self, key: np.ndarray, at_or_before: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """Binary search of each key's entries, all keys at once: the first slot where `at_or_before` is
        false (entries are ordered, so it is true up to there)."""
        base, remaining = self._start[key], self._size[key]
        while remaining.any():
            half = remaining >> 1
            step = at_or_before(base + half) & (remaining > 0)
            base = np.where(step, base + half + 1, base)
            remaining = np.where(step, remaining - half - 1, half)
        return base

    def _append(
        self, keys: np.ndarray, count: np.ndarray, instant: np.ndarray, tie: np.ndarray, value: np.ndarray
    ) -> None:
        """Entries sorted by (key, instant, tie), all after their key's last one, with room for them."""
        end = self._start[keys] + self._size[keys]
        self._place(keys, end, count, instant, tie, value)
        self._size[keys] += count

    def _merge(
        self, keys: np.ndarray, count: np.ndarray, instant: np.ndarray, tie: np.ndarray, value: np.ndarray
    ) -> None:
        """Entries sorted by (key, instant, tie), some before their key's last one, with room for them: each
        key's entries from its first new one on, old and new, sorted again together (all keys at once: a tick
        comes in several calls, in no time order, so many cards get an entry just before their last)."""
        first = np.cumsum(count) - count
        cut = self.end_of(keys, instant[first], tie[first])  # the old entries from here on move
        after = self._start[keys] + self._size[keys] - cut
        held = _slots(cut, after)
        owner = np.concatenate([np.repeat(keys, after), np.repeat(keys, count)])
        instant = np.concatenate([self._instant[held], instant])
        tie = np.concatenate([self._tie[held], tie])
        value = np.concatenate([self._value[held], value])
        order = np.lexsort((tie, instant, owner))
        self._place(keys, cut, after + count, instant[order], tie[order], value[order])
        self._size[keys] += count

    def _place(
        self,
        keys: np.ndarray,
        at: np.ndarray,
        count: np.ndarray,
        instant: np.ndarray,
        tie: np.ndarray,
        value: np.ndarray,
    ) -> None:
        """Write each key's `count` entries (sorted by key, instant, tie) from its slot `at` on, with their
        running sums from the one at `at`."""
        slot = _slots(at, count)
        self._instant[slot], self._tie[slot], self._value[slot] = instant, tie, value
        first = np.cumsum(count) - count
        summed = np.cumsum(value)
        self._running[slot + 1] = np.repeat(self._running[at] - summed[first] + value[first], count) + summed

    def _rewrite(
        self, key: int, instant: np.ndarray, tie: np.ndarray, value: np.ndarray, expired: Callable[[], int]
    ) -> None:
        """A key without room for its new entries: merged with its own, less what no window reaches, in place
        if that fills at most three quarters of its room, else moved to the end of the slab with twice the
        room it needs (each key is moved once per so many entries, not at every entry)."""
        start, size = int(self._start[key]), int(self._size[key])
        held = slice(start, start + size)
        instant = np.concatenate([self._instant[held], instant])
        tie = np.concatenate([self._tie[held], tie])
        value = np.concatenate([self._value[held], value])
        order = np.lexsort((tie, instant))
        live = order[int(np.searchsorted(instant[order], expired(), side="right")) :]
        instant, tie, value = instant[live], tie[live], value[live]
        if len(instant) > self._capacity[key] * 3 // 4:
            self._capacity[key] = 0  # its slots become a hole
            start = self._allocate(key, max(_MIN_CAPACITY, 2 * len(instant)))
        self._write(key, start, instant, tie, value)

    def _write(self, key: int, start: int, instant: np.ndarray, tie: np.ndarray, value: np.ndarray) -> None:
        end = start + len(instant)
        self._instant[start:end], self._tie[start:end], self._value[start:end] = instant, tie, value
        self._running[start] = 0.0
        self._running[start + 1 : end + 1] = np.cumsum(value)
        self._start[key], self._size[key] = start, len(instant)

    def _allocate(self, key: int, capacity: int) -> int:
        """Room for `capacity` entries (and the running sum after the last) at the end of the slab."""
        if self._end + capacity + 1 > len(self._instant):
            self._rebuild(extra=capacity + 1)
        start = self._end
        self._end += capacity + 1
        self._capacity[key] = capacity
        return start

    def _rebuild(self, extra: int) -> None:
        """The slab again without holes (each key keeps twice the room its entries take), grown so that at
        most half is used."""
        room = np.where(self._capacity > 0, np.maximum(_MIN_CAPACITY, 2 * self._size), 0)
        slots = np.where(room > 0, room + 1, 0)
        used = int(slots.sum())
        length = max(len(self._instant), 2 * (used + extra))
        start = np.cumsum(slots) - slots
        # Every entry's slot, old and new, and the running sum after each key's last.
        kept = np.where(room > 0, self._size + 1, 0)
        old, new = _slots(self._start, kept), _slots(start, kept)
        for name in ("_instant", "_tie", "_value", "_running"):
            column = getattr(self, name)
            rebuilt = np.zeros(length, dtype=column.dtype)
            rebuilt[new] = column[old]
            setattr(self, name, rebuilt)
        self._start, self._capacity, self._end = start, room, used

    def _ensure_keys(self, keys: int) -> None:
        grow = keys - len(self._start)
        if grow > 0:
            self._start = np.concatenate([self._start, np.zeros(grow, dtype=np.int64)])
            self._size = np.concatenate([self._size, np.zeros(grow, dtype=np.int64)])
            self._capacity = np.concatenate([self._capacity, np.zeros(grow, dtype=np.int64)])


def _slots(start: np.ndarray, count: np.ndarray) -> np.ndarray:
    """start[0], start[0] + 1, ..., start[0] + count[0] - 1, start[1], ...: the slots of several keys."""
    return np.repeat(start - (np.cumsum(count) - count), count) + np.arange(int(count.sum()))
