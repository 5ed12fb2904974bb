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
_AFTER_ALL = np.iinfo(np.int64).max  # the instant of empty slots: after any real one


class Timelines:
    def __init__(self, slab: int = 1 << 16) -> None:
        self._instant = np.full(slab, _AFTER_ALL, dtype=np.int64)
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
        appended = after_last & fits
        if appended.any():
            rows = np.repeat(appended, count)
            self._append(keys[appended], count[appended], instant[rows], tie[rows], value[rows])
        expired_at = functools.cache(expired)  # asked once at most
        for group in np.flatnonzero(~appended).tolist():
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
        group_start = np.repeat(np.cumsum(count) - count, count)
        slot = np.repeat(end, count) + np.arange(len(instant)) - group_start
        self._instant[slot], self._tie[slot], self._value[slot] = instant, tie, value
        summed = np.cumsum(value)
        before_group = np.repeat(summed[np.cumsum(count) - count] - value[np.cumsum(count) - count], count)
        self._running[slot + 1] = np.repeat(self._running[end], count) + summed - before_group
        self._size[keys] += count

    def _rewrite(
        self, key: int, instant: np.ndarray, tie: np.ndarray, value: np.ndarray, expired: Callable[[], int]
    ) -> None:
        """Merge the key's new entries with its own; if that fills more than three quarters of its room, drop
        what no window reaches, and if it still does, move it to the end of the slab with twice the room."""
        start, size = int(self._start[key]), int(self._size[key])
        held = slice(start, start + size)
        instant = np.concatenate([self._instant[held], instant])
        tie = np.concatenate([self._tie[held], tie])
        value = np.concatenate([self._value[held], value])
        order = np.lexsort((tie, instant))
        instant, tie, value = instant[order], tie[order], value[order]
        if len(instant) > self._capacity[key] * 3 // 4:
            live = slice(int(np.searchsorted(instant, expired(), side="right")), None)
            instant, tie, value = instant[live], tie[live], value[live]
        if len(instant) > self._capacity[key] * 3 // 4:
            self._capacity[key] = 0  # its slots become a hole
            start = self._allocate(key, max(_MIN_CAPACITY, 2 * len(instant)))
        self._write(key, start, instant, tie, value)

    def _write(self, key: int, start: int, instant: np.ndarray, tie: np.ndarray, value: np.ndarray) -> None:
        end = start + len(instant)
        self._instant[start:end], self._tie[start:end], self._value[start:end] = instant, tie, value
        self._instant[end : start + self._capacity[key]] = _AFTER_ALL
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
        old = (
            np.repeat(self._start, kept)
            + np.arange(int(kept.sum()))
            - np.repeat(np.cumsum(kept) - kept, kept)
        )
        new = np.repeat(start, kept) + old - np.repeat(self._start, kept)
        for name, fill in (("_instant", _AFTER_ALL), ("_tie", 0), ("_value", 0.0), ("_running", 0.0)):
            column = getattr(self, name)
            rebuilt = np.full(length, fill, dtype=column.dtype)
            rebuilt[new] = column[old]
            setattr(self, name, rebuilt)
        self._start, self._capacity, self._end = start, room, used

    def _ensure_keys(self, keys: int) -> None:
        grow = keys - len(self._start)
        if grow > 0:
            self._start = np.concatenate([self._start, np.zeros(grow, dtype=np.int64)])
            self._size = np.concatenate([self._size, np.zeros(grow, dtype=np.int64)])
            self._capacity = np.concatenate([self._capacity, np.zeros(grow, dtype=np.int64)])
