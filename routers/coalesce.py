"""Coalescing: concurrent calls of a batch function share one call, with no waiting window.

Contract: `Coalescer(fn, max_items)` wraps `fn(items: list) -> list` (one result per item,
in order; results must not depend on the other items beyond rounding). Calling it with a
list of items returns their results. A call that finds no batch running runs at once, alone
or with whatever is queued; calls arriving while a batch runs queue up, and when it ends the
first of them runs everything queued (up to `max_items` items per run; a caller's items are
never split) while the others wait for it. So one caller never waits for a window, and N
concurrent callers cost about one call of the model per batch instead of N (the host's
decoding loop does the same for generation, per step). If a shared run raises, each of its
callers is retried alone, so one caller's bad input fails only that caller.
Thread-safe; used by the sentence encoder (`routers.encoders.MiniLM`), whose per-call cost
dominates routing a single query.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any


class _Call:
    __slots__ = ("done", "error", "items", "lead", "result")

    def __init__(self, items: list):
        self.items, self.done, self.lead = items, threading.Event(), False
        self.result: list | None = None
        self.error: BaseException | None = None


class Coalescer:
    def __init__(self, fn: Callable[[list], Sequence[Any]], max_items: int = 256):
        self.fn, self.max_items = fn, max_items
        self._lock = threading.Lock()
        self._queue: list[_Call] = []
        self._running = False
        self.runs = 0  # shared calls of `fn` made (for tests and stats)

    def __call__(self, items: Sequence) -> list:
        me = _Call(list(items))
        with self._lock:
            self._queue.append(me)
            me.lead = not self._running
            self._running = True
        while not me.lead:
            me.done.wait()
            if me.result is not None or me.error is not None:
                break
            me.done.clear()  # woken to lead the next run
        if me.lead and me.result is None and me.error is None:
            self._lead()
        if me.error is not None:
            raise me.error
        return me.result  # type: ignore[return-value]

    def _take(self) -> list[_Call]:
        """The queued calls of the next run (under the lock): at least one, at most `max_items`
        items unless a single call holds more."""
        batch, n = [], 0
        while self._queue and (not batch or n + len(self._queue[0].items) <= self.max_items):
            call = self._queue.pop(0)
            batch.append(call)
            n += len(call.items)
        return batch

    def _lead(self) -> None:
        with self._lock:
            batch = self._take()
        try:
            self._run(batch)
        finally:
            with self._lock:
                if self._queue:
                    nxt = self._queue[0]
                    nxt.lead = True
                    nxt.done.set()
                else:
                    self._running = False
            for call in batch:
                if call.result is None and call.error is None:  # `fn` was interrupted
                    call.error = RuntimeError("a coalesced call was interrupted")
                call.done.set()

    def _run(self, batch: list[_Call]) -> None:
        self.runs += 1
        try:
            results = list(self.fn([x for call in batch for x in call.items]))
        except Exception as e:  # noqa: BLE001 - handed to the callers, alone if shared
            if len(batch) == 1:
                batch[0].error = e
                return
            for call in batch:
                self._run([call])
            return
        start = 0
        for call in batch:
            call.result = results[start : start + len(call.items)]
            start += len(call.items)
