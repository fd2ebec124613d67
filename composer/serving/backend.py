"""The executor behind the HTTP app: an async interface, and the in-process implementation.

Contract (`Backend`): every method is a coroutine, except `stream`, an async iterator.
- `route(base, queries, router, config)` -> one `RoutingPlan` per `Query`.
- `execute(base, prompts, plans, settings)` -> one `Completion` per prompt (a string or chat
  messages); `settings` are `Host.generate`'s max_new_tokens/temperature/top_p/chat/seed.
- `complete(base, queries, prompts, router, config, settings)` -> `Served`: routes and
  executes in one call, in the process that executes (no hop between the two), refusing
  plans that combine more experts than `settings.max_experts` (`policy.check_plans`) before
  any generation; `Served` also says how long routing and execution took there.
- `stream(base, prompt, plan, settings)` yields text deltas, then the `Completion`.
- `register(request, archive)` -> `ExpertRecord` (see `registration.register_expert`);
  `remove(name, version)` -> the removed record. Replicas follow the registry, so both are
  visible to every replica at their next request.
- `start_evaluation(request)` -> the job's view (`composer.eval.jobs`); `evaluation(id,
  records)` -> its view (KeyError if unknown); `evaluations()` -> all views.
- `stats()` -> {"adapters_resident": {base: n}, "residency": {base: AdapterManager.stats()},
  "models_resident": [names], "endpoints": {expert: EndpointPool.stats()}}, and where the
  executor batches, "batches": {base: {"batches", "rows", "max_rows", "shared"}} (one
  replica's; "shared": batches holding rows of more than one request);
  `ready()` -> {component: bool}.
`LocalBackend(settings, registry=None)` runs one `Composer` per base model in this process,
on worker threads (the event loop never blocks on torch); registrations run one at a time
on a thread at the lowest CPU priority, so fitting yields the cores to serving. Ray's implementation is
`ray_cluster.backend.RayBackend`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from composer.executor import HOST, placement
from composer.priority import lower_priority
from composer.serving.policy import check_plans
from composer.serving.registration import register_expert, sweep_uploads
from composer.serving.schemas import RegisterRequest
from composer.settings import Settings
from registry import Registry
from registry.records import ExpertRecord
from routers import Query, RoutingPlan


@dataclass
class Served:
    """`Backend.complete`'s answer: one plan and one completion per prompt (`None` where
    `LocalBackend.complete(..., hosts_only=True)` left a whole-model row to its caller), and
    the seconds spent routing and executing where it ran; `replica` names that process where
    there are several (Ray: "<node id>/<pid>")."""

    plans: list[RoutingPlan]
    completions: list
    route_s: float
    execute_s: float
    replica: str | None = None


class Backend(Protocol):
    async def route(
        self, base: str, queries: list[Query], router: str | None, config: dict
    ) -> list[RoutingPlan]: ...
    async def execute(self, base: str, prompts: list, plans: list[RoutingPlan], settings: dict) -> list: ...
    async def complete(
        self, base: str, queries: list[Query], prompts: list, router: str | None, config: dict, settings: dict
    ) -> Served: ...
    def stream(self, base: str, prompt: Any, plan: RoutingPlan, settings: dict) -> AsyncIterator: ...
    async def register(self, request: RegisterRequest, archive: bytes | None) -> ExpertRecord: ...
    async def remove(self, name: str, version: int | None) -> ExpertRecord: ...
    async def start_evaluation(self, request) -> dict: ...
    async def evaluation(self, job_id: str, records: bool) -> dict: ...
    async def evaluations(self) -> list[dict]: ...
    async def stats(self) -> dict: ...
    async def ready(self) -> dict: ...


def merge_endpoints(views) -> dict[str, dict]:
    """Per endpoint expert, the health several executors saw: counts and seconds add up;
    up is the last call's outcome as its latest observer saw it (here: any up)."""
    out: dict[str, dict] = {}
    for view in views:
        for name, s in view.items():
            if name not in out:
                out[name] = dict(s)
                continue
            o = out[name]
            for k in ("calls", "failures", "seconds"):
                o[k] += s[k]
            o["up"] = o["up"] or s["up"]
    return out


async def iterate_in_thread(it: Iterator, run=None) -> AsyncIterator:
    """Drive a blocking iterator from worker threads (`run(fn, *args)`, else asyncio's), one item at a time."""
    done = object()
    run = run or asyncio.to_thread
    while (item := await run(next, it, done)) is not done:
        yield item


class LocalBackend:
    def __init__(self, settings: Settings, registry: Registry | None = None, encoder=None):
        self.settings = settings
        self.registry = registry or settings.registry()
        self.encoder = encoder
        self._composers: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._jobs = None
        self._registrar: ThreadPoolExecutor | None = None  # one low-priority thread for registrations
        self._workers: ThreadPoolExecutor | None = None  # requests waiting in the decoding loop
        sweep_uploads(self.registry.home)  # uploads a killed process left half-unpacked

    def composer(self, base: str | None = None):
        from composer.api import Composer  # torch loads with the first model, not with the app

        base = base or self.registry.routing_base(self.settings.base)
        with self._lock:
            if base not in self._composers:
                self._composers[base] = Composer(
                    self.registry, base, encoder=self.encoder, settings=self.settings
                )
            return self._composers[base]

    def _run(self, fn, *args):
        """`fn(*args)` on the backend's worker threads: enough of them for every admitted request
        to wait in the host's decoding loop at once (asyncio's default pool has a handful)."""
        with self._lock:
            if self._workers is None:
                self._workers = ThreadPoolExecutor(self.settings.max_queue + 8, "composer-work")
        return asyncio.get_running_loop().run_in_executor(self._workers, fn, *args)

    async def route(self, base, queries, router, config):
        return await self._run(lambda: self.composer(base).route(queries, router, **config))

    async def execute(self, base, prompts, plans, settings):
        return await self._run(lambda: self.composer(base).execute(prompts, plans, **settings))

    async def complete(self, base, queries, prompts, router, config, settings, hosts_only=False):
        def work() -> Served:
            c = self.composer(base)
            with c.registry.snapshot():  # one registry read for routing and execution
                return self._complete(c, queries, prompts, router, config, settings, hosts_only)

        return await self._run(work)

    def _complete(self, c, queries, prompts, router, config, settings, hosts_only) -> Served:
        t0 = time.perf_counter()
        plans = c.route(queries, router, **config)
        check_plans(plans, self.settings)
        t1 = time.perf_counter()
        models = c.executor.model_names() if hosts_only else set()
        idx = [i for i, p in enumerate(plans) if placement(p, models) == HOST]
        done = c.execute([prompts[i] for i in idx], [plans[i] for i in idx], **settings)
        out: list = [None] * len(plans)
        for i, d in zip(idx, done):
            out[i] = d
        return Served(plans, out, t1 - t0, time.perf_counter() - t1)

    async def stream(self, base, prompt, plan, settings):
        it = await self._run(lambda: self.composer(base).stream(prompt, plan, **settings))
        async for item in iterate_in_thread(it, self._run):
            yield item

    async def register(self, request, archive):
        def work():
            # the base is checked before a Composer is made for it
            base = self.registry.base(request.base).name if request.base and request.kind == "lora" else None
            rec = register_expert(self.composer(base), request, self.settings, archive)
            for c in list(self._composers.values()):
                c.sync()
            return rec

        with self._lock:
            if self._registrar is None:
                self._registrar = ThreadPoolExecutor(1, "composer-register", initializer=lower_priority)
        return await asyncio.get_running_loop().run_in_executor(self._registrar, work)

    async def remove(self, name, version):
        def work():
            rec = self.registry.remove(name, version)
            for c in list(self._composers.values()):
                c.models.drop(name)
                c.sync()
            return rec

        return await asyncio.to_thread(work)

    @property
    def jobs(self):
        from composer.eval.jobs import EvalJobs

        with self._lock:
            if self._jobs is None:
                home = self.registry.home
                self._jobs = EvalJobs(self.composer, home / "evaluations", home / "eval-cache.sqlite")
            return self._jobs

    async def start_evaluation(self, request):
        return await asyncio.to_thread(
            self.jobs.start,
            request.source(),
            request.routers,
            request.limit,
            {"max_new_tokens": request.max_tokens},
            request.base,
        )

    async def evaluation(self, job_id, records):
        return self.jobs.get(job_id, records)

    async def evaluations(self):
        return self.jobs.list()

    async def stats(self):
        cs = list(self._composers.items())
        return {
            "adapters_resident": {b: len(c.resident()) for b, c in cs},
            "residency": {b: c.adapters.stats() for b, c in cs},
            "batches": {b: c.adapters.batching() for b, c in cs if c.adapters.batching()},
            "models_resident": sorted({m for _, c in cs for m in c.models.resident()}),
            "endpoints": merge_endpoints(c.endpoints.stats() for _, c in cs),
        }

    async def ready(self):
        # ready to serve once there is something to serve: a base model, or an endpoint/whole model alone
        return {"registry": bool(self.registry.list())}
