"""Coalescing concurrent batch calls: every caller gets its own results, concurrent callers
share runs, one caller's bad input fails only that caller, and the real sentence encoder
answers the same alone and coalesced."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from routers.coalesce import Coalescer
from routers.encoders import MiniLM

N = 12


def held_first_run(fn, coalescer_ref: list):
    """`fn`, whose first run waits until the other N-1 callers have queued (so the test knows
    what the second run holds, whatever the machine's speed)."""
    first = threading.Event()

    def run(items):
        if not first.is_set():
            first.set()
            deadline = time.monotonic() + 30
            while len(coalescer_ref[0]._queue) < N - 1 and time.monotonic() < deadline:
                time.sleep(0.001)
        return fn(items)

    return run


def call_all(c: Coalescer, inputs: list[list]) -> list:
    def one(items):
        try:
            return c(items)
        except ValueError as e:
            return e

    with ThreadPoolExecutor(N) as pool:
        first = pool.submit(one, inputs[0])
        while c.runs == 0:  # the first caller leads
            time.sleep(0.001)
        rest = list(pool.map(one, inputs[1:]))
    return [first.result(), *rest]


def test_concurrent_callers_share_runs_and_get_their_own_results():
    ref: list = []
    c = Coalescer(held_first_run(lambda xs: [x * 2 for x in xs], ref))
    ref.append(c)
    inputs = [[i, i + 100] for i in range(N)]
    out = call_all(c, inputs)
    assert out == [[2 * a, 2 * b] for a, b in inputs]
    assert c.runs == 2  # the first alone, then every caller that queued meanwhile in one run
    assert c([7]) == [14] and c.runs == 3 and not c._running  # a lone call runs at once


def test_a_bad_item_fails_only_its_caller():
    def double(xs):
        if "bad" in xs:
            raise ValueError("bad item")
        return [x * 2 for x in xs]

    ref: list = []
    c = Coalescer(held_first_run(double, ref))
    ref.append(c)
    inputs = [["a"]] + [["bad"] if i == 5 else [f"x{i}"] for i in range(1, N)]
    out = call_all(c, inputs)
    assert isinstance(out[5], ValueError)
    assert [o for i, o in enumerate(out) if i != 5] == [[x[0] * 2] for i, x in enumerate(inputs) if i != 5]


def test_a_run_never_splits_a_caller_and_respects_max_items():
    seen: list[int] = []
    ref: list = []
    c = Coalescer(held_first_run(lambda xs: seen.append(len(xs)) or list(xs), ref), max_items=5)
    ref.append(c)
    inputs = [[i] * 3 for i in range(N)]  # 3 items each: at most one caller per run of 5
    assert call_all(c, inputs) == inputs
    assert seen[0] == 3 and all(n == 3 for n in seen) and c.runs == N


def test_encoder_coalesced_equals_alone():
    enc = MiniLM()
    texts = [f"translate word number {i} into the toy language" for i in range(N)]
    alone = np.stack([enc.encode([t])[0] for t in texts])
    with ThreadPoolExecutor(N) as pool:
        together = np.stack([v[0] for v in pool.map(lambda t: enc.encode([t]), texts)])
    np.testing.assert_allclose(together, alone, atol=1e-5)  # padding changes float sums only
