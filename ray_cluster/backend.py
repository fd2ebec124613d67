"""`RayBackend`: the `composer.serving.Backend` interface over Serve deployment handles.

Contract: routing, registration and removal go to the router deployment; execution is
split by plan: plans selecting a whole-model expert go to the model deployment, the rest to
the host deployment of the request's base model (batched there). Errors raised in a
replica come back as the original exception (not Ray's wrapper with a remote traceback),
so the HTTP layer maps them to the same 4xx as in-process.
"""
from __future__ import annotations

import asyncio

from ray.exceptions import RayTaskError

from composer.serving.backend import default_base
from composer.serving.settings import Settings
from registry import Registry


def unwrap(e: BaseException) -> BaseException:
    cause = getattr(e, "cause", None) if isinstance(e, RayTaskError) else None
    return cause if isinstance(cause, BaseException) else e


async def call(response):
    try:
        return await response
    except RayTaskError as e:
        raise unwrap(e) from None


class RayBackend:
    def __init__(self, router, models, hosts: dict, settings: Settings):
        self.router, self.models, self.hosts, self.settings = router, models, hosts, settings
        self.registry = Registry(home=settings.home)

    def _host(self, base: str | None):
        from composer.errors import ComposerError
        base = base or default_base(self.registry, self.settings)
        if base not in self.hosts:
            raise ComposerError(f"base model {base!r} has no host deployment (bases registered after the "
                                "service started need a restart)")
        return self.hosts[base]

    async def route(self, base, queries, router, config):
        return await call(self.router.route.remote(base, queries, router, config))

    async def execute(self, base, prompts, plans, settings):
        models = {r.name for r in self.registry.list(kind="model")}
        on_model = [i for i, p in enumerate(plans) if p.mode == "select" and p.experts and p.experts[0] in models]
        on_host = [i for i in range(len(plans)) if i not in set(on_model)]
        jobs = []
        if on_host:
            jobs.append(call(self._host(base).execute.remote([prompts[i] for i in on_host],
                                                             [plans[i] for i in on_host], settings)))
        if on_model:
            jobs.append(call(self.models.execute.remote([prompts[i] for i in on_model],
                                                        [plans[i] for i in on_model], settings)))
        results = await asyncio.gather(*jobs)
        out: list = [None] * len(plans)
        for idx, done in zip([x for x in (on_host, on_model) if x], results):
            for i, c in zip(idx, done):
                out[i] = c
        return out

    async def stream(self, base, prompt, plan, settings):
        models = {r.name for r in self.registry.list(kind="model")}
        target = self.models if plan.mode == "select" and plan.experts and plan.experts[0] in models \
            else self._host(base)
        gen = target.options(stream=True).stream.remote(prompt, plan, settings)
        try:
            async for item in gen:
                yield item
        except RayTaskError as e:
            raise unwrap(e) from None

    async def register(self, request, archive):
        return await call(self.router.register.remote(request, archive))

    async def remove(self, name, version):
        return await call(self.router.remove.remote(name, version))

    async def stats(self):
        sizes = await asyncio.gather(*(call(h.stats.remote()) for h in self.hosts.values()))
        return {"adapters_resident": {k: v for s in sizes for k, v in s.items()},
                "models_resident": await call(self.models.resident.remote())}

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
