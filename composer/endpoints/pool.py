"""Running requests on endpoint experts, with per-endpoint health.

Contract: `EndpointPool(registry, allowed, cooldown_s=COOLDOWN_S)`; `allowed` is the
operator's allowlist (`Settings.allowed_endpoints`).
- `names()`: the ready endpoint experts. `spec(name)`: its stored spec.
- `generate(name, prompts, settings)` -> per prompt an `EndpointResult` or the
  `EndpointError` that prompt met (prompts run concurrently, at most `PARALLEL` at once);
  `stream(name, prompt, settings)` yields deltas then the `EndpointResult`.
  Before every call the URL passes `guard.check_url` again (the allowlist may have shrunk;
  a name may now resolve elsewhere): a refusal is an `EndpointError("refused")`.
- Health: every call's outcome and latency are counted; an endpoint whose last call failed
  is `down(name)` (the reason) for `cooldown_s`, during which the executor does not wait
  on it but goes to the plan's next expert; after that the next request tries it again (a
  success marks it up). `stats()` -> {name: {up, calls, failures, seconds, last_error}}.
Thread-safe.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from composer.endpoints import client
from composer.endpoints.client import EndpointError, EndpointResult
from composer.endpoints.guard import EndpointRefused, check_url

COOLDOWN_S = 2.0
PARALLEL = 16


class EndpointPool:
    def __init__(self, registry, allowed: tuple[str, ...], cooldown_s: float = COOLDOWN_S):
        self.registry, self.allowed, self.cooldown_s = registry, tuple(allowed), cooldown_s
        self._stats: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._threads: ThreadPoolExecutor | None = None

    def names(self) -> set[str]:
        return {r.name for r in self.registry.list(kind="endpoint")}

    def spec(self, name: str) -> dict:
        rec = self.registry.get(name)
        if rec.kind != "endpoint":
            raise ValueError(f"{name!r} is a {rec.kind} expert, not an endpoint")
        return rec.config["endpoint"]

    def down(self, name: str) -> str | None:
        with self._lock:
            s = self._stats.get(name)
            if s and not s["up"] and time.monotonic() - s["failed_at"] < self.cooldown_s:
                return s["last_error"]
        return None

    def _record(self, name: str, seconds: float, error: EndpointError | None) -> None:
        with self._lock:
            s = self._stats.setdefault(
                name,
                {"up": True, "calls": 0, "failures": 0, "seconds": 0.0, "last_error": None, "failed_at": 0.0},
            )
            s["calls"] += 1
            s["seconds"] += seconds
            s["up"] = error is None
            if error is not None:
                s["failures"] += 1
                s["last_error"], s["failed_at"] = str(error), time.monotonic()

    def _spec_checked(self, name: str) -> dict:
        spec = self.spec(name)
        try:
            check_url(spec["url"], self.allowed)
        except EndpointRefused as e:
            raise EndpointError("refused", str(e)) from None
        return spec

    def _one(self, name: str, prompt, settings: dict) -> EndpointResult | EndpointError:
        t0 = time.perf_counter()
        try:
            result = client.complete(self._spec_checked(name), prompt, settings)
        except EndpointError as e:
            self._record(name, time.perf_counter() - t0, e)
            return e
        self._record(name, time.perf_counter() - t0, None)
        return result

    def generate(self, name: str, prompts: Sequence, settings: dict) -> list[EndpointResult | EndpointError]:
        if len(prompts) == 1:
            return [self._one(name, prompts[0], settings)]
        with self._lock:
            if self._threads is None:
                self._threads = ThreadPoolExecutor(PARALLEL, "composer-endpoint")
        return list(self._threads.map(lambda p: self._one(name, p, settings), prompts))

    def stream(self, name: str, prompt, settings: dict) -> Iterator[str | EndpointResult]:
        t0 = time.perf_counter()
        try:
            yield from client.stream(self._spec_checked(name), prompt, settings)
        except EndpointError as e:
            self._record(name, time.perf_counter() - t0, e)
            raise
        self._record(name, time.perf_counter() - t0, None)

    def stats(self) -> dict[str, dict]:
        with self._lock:
            return {
                n: {k: v for k, v in s.items() if k != "failed_at"} for n, s in sorted(self._stats.items())
            }
