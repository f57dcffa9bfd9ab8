"""Work shared between the families of one run, keyed by the object it was computed from.

:class:`Memo` holds results keyed by an object's identity (held weakly) and a key; the engines own
one (a Dask worker's is :func:`process_memo`, reached through a :class:`ProcessMemo`).
:func:`identity_token` names an object in keys that must survive pickling.
"""

from __future__ import annotations

import threading
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

__all__ = ["Memo", "ProcessMemo", "identity_token", "process_memo"]


_MISSING = object()


class Memo:
    """Results keyed by an object's identity (held weakly) and a key: the families of one run
    that are given the same frame share work (the billing ledger) through the engine's memo.

    An entry is used only while its object is alive and is the same object, so a freed frame
    never hits a stale entry, and it is dropped (its result freed) at the next use of the memo
    after its object is freed; the oldest entries are dropped beyond ``slots``.
    """

    def __init__(self, slots: int = 4, lock: bool = False):
        self.slots = slots
        self._entries: OrderedDict = OrderedDict()
        self._lock = threading.Lock() if lock else None
        self._making: dict[tuple, threading.Lock] = {}
        self._freed: list[tuple] = []  # keys whose object was freed (appended by weakref callbacks)
        self.made = self.hits = 0  # results computed, results shared

    def get(self, owner: object, key: tuple, make: Callable[[], Any]) -> Any:
        full = (id(owner), *key)
        if self._lock is None:
            found = self._lookup(owner, full)
            return self._store(owner, full, make()) if found is _MISSING else found
        with self._lock:  # one lock per entry: unrelated entries are made at the same time
            entry = self._making.setdefault(full, threading.Lock())
        with entry:  # threads wanting this entry: one computes, the others wait and share
            with self._lock:
                found = self._lookup(owner, full)
            if found is not _MISSING:
                return found
            value = make()
            with self._lock:
                return self._store(owner, full, value)

    def _lookup(self, owner: object, full: tuple) -> Any:
        self._drop_freed()
        hit = self._entries.get(full)
        if hit is not None and hit[0]() is owner:
            self._entries.move_to_end(full)
            self.hits += 1
            return hit[1]
        return _MISSING

    def _store(self, owner: object, full: tuple, value: Any) -> Any:
        self.made += 1
        freed = self._freed

        def forget(_: weakref.ref) -> None:  # only appends (no lock: it runs wherever the object is freed)
            freed.append(full)

        try:
            self._entries[full] = (weakref.ref(owner, forget), value)
        except TypeError:  # pragma: no cover - frames are weak-referenceable
            return value
        while len(self._entries) > self.slots:
            dropped, _ = self._entries.popitem(last=False)
            self._making.pop(dropped, None)
        return value

    def _drop_freed(self) -> None:
        while self._freed:
            full = self._freed.pop()
            hit = self._entries.get(full)
            if hit is not None and hit[0]() is None:  # not an entry stored since for a new object
                del self._entries[full]
                self._making.pop(full, None)


class ProcessMemo(Memo):
    """A memo sent to other processes (a Dask worker) as a reference to the memo of the process it
    arrives in: the families' tasks of one bucket that run in one worker share its ledger, as the
    pandas engine's families do. Each worker's memo holds a few entries (a bucket's ledger each)."""

    def __reduce__(self) -> tuple:
        return (process_memo, ())


_PROCESS_MEMO: list[ProcessMemo] = []
_PROCESS_MEMO_LOCK = threading.Lock()


def process_memo() -> ProcessMemo:
    """This process's :class:`ProcessMemo` (made on first use; a worker's tasks run in threads)."""
    with _PROCESS_MEMO_LOCK:
        if not _PROCESS_MEMO:
            _PROCESS_MEMO.append(ProcessMemo(slots=6, lock=True))
        return _PROCESS_MEMO[0]


def identity_token(value: object) -> str | None:
    """A token naming one object for as long as it lives (the same for every context built from
    it), which pickled contexts carry along: memo keys holding it hit on every worker's copy, where
    an object's id would differ between copies (and can be reused once the object is freed)."""
    if value is None:
        return None
    return _TOKENS.get(value, ("token",), lambda: uuid.uuid4().hex)


_TOKENS = Memo(slots=64, lock=True)
