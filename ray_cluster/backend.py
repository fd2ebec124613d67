"""`RayBackend`: the `composer.serving.Backend` interface over Serve deployment handles.

Contract: `complete` (route and execute) goes to the host deployment of the request's base
model, which routes in the same replica that executes (one hop; rows it routed to a
whole-model expert come back unrun and go to the model deployment); routing alone
(`route`, POST /v1/route and streams), registration and removal go to the router
deployment; evaluations to the evaluation deployment; execution is split by plan with `composer.executor.group` (the
same split as in-process): plans selecting a whole-model expert go to the model deployment,
the rest to the host deployment of the request's base model (batched there). Errors raised in a
replica come back as the original exception (not Ray's wrapper with a remote traceback),
so the HTTP layer maps them to the same 4xx as in-process. A replica that died under a
request, or a deployment with no replica to take it, is `Unavailable` (503, Retry-After):
Serve restarts the replica and the client retries (OpenAI clients do so by themselves).
"""

from __future__ import annotations

import asyncio
import time

from ray.exceptions import RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

from composer.errors import ComposerError
from composer.executor import HOST, group, placement, scatter
from composer.serving.backend import merge_endpoints
from composer.serving.errors import Unavailable
from composer.settings import Settings

GONE = (RayActorError, BackPressureError, DeploymentUnavailableError)  # ActorDied/Unavailable included


def unwrap(e: BaseException) -> BaseException:
    cause = getattr(e, "cause", None) if isinstance(e, RayTaskError) else None
    e = cause if isinstance(cause, BaseException) else e
    if isinstance(e, GONE):
        return Unavailable("a serving replica is restarting or overloaded; retry shortly")
    return e


async def call(response):
    try:
        return await response
    except (RayTaskError, *GONE) as e:
        raise unwrap(e) from None


class RayBackend:
    def __init__(self, router, models, hosts: dict, evals, settings: Settings):
        self.router, self.models, self.hosts, self.evals, self.settings = (
            router,
            models,
            hosts,
            evals,
            settings,
        )
        self.registry = settings.registry()

    def _host(self, base: str | None):
        base = base or self.registry.routing_base(self.settings.base)
        if base not in self.hosts:
            raise ComposerError(
                f"base model {base!r} has no host deployment (bases registered after the "
                "service started need a restart)"
            )
        return self.hosts[base]

    async def route(self, base, queries, router, config):
        return await call(self.router.route.remote(base, queries, router, config))

    def _models(self) -> set[str]:
        return {r.name for r in self.registry.list(kind="model")}

    def _deployment(self, base: str | None, where):
        return self._host(base) if where == HOST else self.models

    async def execute(self, base, prompts, plans, settings):
        groups = group(plans, self._models())
        done = await asyncio.gather(
            *(
                call(
                    self._deployment(base, where).execute.remote(
                        [prompts[i] for i in idx], [plans[i] for i in idx], settings
                    )
                )
                for where, idx in groups.items()
            )
        )
        return scatter(len(plans), groups, dict(zip(groups, done)))

    async def complete(self, base, queries, prompts, router, config, settings):
        served = await call(self._host(base).complete.remote(queries, prompts, router, config, settings))
        rest = [i for i, c in enumerate(served.completions) if c is None]
        if rest:  # routed to whole-model experts
            t0 = time.perf_counter()
            done = await self.execute(
                base, [prompts[i] for i in rest], [served.plans[i] for i in rest], settings
            )
            for i, c in zip(rest, done):
                served.completions[i] = c
            served.execute_s += time.perf_counter() - t0
        return served

    async def stream(self, base, prompt, plan, settings):
        target = self._deployment(base, placement(plan, self._models()))
        gen = target.options(stream=True).stream.remote(prompt, plan, settings)
        try:
            async for item in gen:
                yield item
        except (RayTaskError, *GONE) as e:
            raise unwrap(e) from None

    async def register(self, request, archive):
        return await call(self.router.register.remote(request, archive))

    async def remove(self, name, version):
        return await call(self.router.remove.remote(name, version))

    async def start_evaluation(self, request):
        return await call(self.evals.start.remote(request))

    async def evaluation(self, job_id, records):
        return await call(self.evals.get.remote(job_id, records))

    async def evaluations(self):
        return await call(self.evals.list.remote())

    async def stats(self):
        hosts = await asyncio.gather(*(call(h.stats.remote()) for h in self.hosts.values()))
        return {
            "adapters_resident": {b: s["adapters"] for b, s in zip(self.hosts, hosts)},
            "residency": {b: s["residency"] for b, s in zip(self.hosts, hosts)},
            "batches": {
                b: {
                    k: v
                    for k, v in s.items()
                    if k not in ("adapters", "residency", "pid", "replica", "endpoints")
                }
                for b, s in zip(self.hosts, hosts)
            },
            "endpoints": merge_endpoints(s.get("endpoints", {}) for s in hosts),
            "models_resident": await call(self.models.resident.remote()),
        }

    async def ready(self):
        async def ping(name, coro):
            try:
                await asyncio.wait_for(call(coro), timeout=5)
                return name, True
            except Exception:  # noqa: BLE001 - any failure means "not ready"
                return name, False

        checks = [ping("router", self.router.ready.remote()), ping("models", self.models.resident.remote())]
        checks += [ping(f"host:{b}", h.stats.remote()) for b, h in self.hosts.items()]
        return dict(await asyncio.gather(*checks))
