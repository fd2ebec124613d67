"""The Serve deployments. Each wraps an in-process `LocalBackend` (composer.serving) and
exposes the part of it that its role needs, so Ray adds placement and batching, not logic.

- `RouterDeployment`: routing alone (`route`: POST /v1/route, streams) over every base
  model; registration and removal (post-hoc fitting runs here, on a private frozen copy
  of the base, never on a serving host).
- `HostDeployment(base)`: one per base model: the base with its resident adapters and
  their gates, and its own routers (`complete` routes and executes in one call, so a
  completion makes one hop from the ingress). Concurrent requests run in their own threads:
  their queries meet in shared encoder calls (`routers.coalesce`) and their rows in the
  host's decoding loop (continuous batching: rows join and leave between steps, each with
  its own routing and sampling), so no request-level batching window is needed anywhere; a
  bad row fails alone.
- `ModelDeployment`: whole-model experts, loaded on demand, at most `max_models` resident
  (LRU).
- `EvalDeployment`: batch evaluation jobs (POST /v1/evaluations), one replica, its own
  host copy, so evaluations do not take the serving host's lock.
- `Ingress`: the FastAPI app (`composer.serving.create_app`) over a `RayBackend`.
Torch threads per replica: `settings.threads`, else every core (the router: half of them,
so post-hoc fitting during a registration leaves the hosts room; bench/registration.py).
"""

from __future__ import annotations

import os

import ray
from ray import serve

from composer.progress import set_quiet
from composer.serving import LocalBackend, create_app
from composer.settings import Settings
from ray_cluster.backend import RayBackend


def _threads(settings: Settings, share: float = 1.0) -> None:
    """A replica's process setup from its settings: torch threads, progress bars."""
    import torch

    torch.set_num_threads(settings.threads or max(1, int((os.cpu_count() or 1) * share)))
    set_quiet(settings.quiet)


def _warm(composer) -> None:
    """Load the query encoder and build the example index now, not on the first request."""
    if composer.experts():
        composer.route(["warm up"])


@serve.deployment(ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=64)
class RouterDeployment:
    def __init__(self, settings: Settings):
        _threads(settings, share=0.5)  # registration's fitting must leave the hosts room to serve
        self.local = LocalBackend(settings)
        _warm(self.local.composer())

    async def route(self, base, queries, router, config):
        return await self.local.route(base, queries, router, config)

    async def register(self, request, archive):
        return await self.local.register(request, archive)

    async def remove(self, name, version):
        return await self.local.remove(name, version)

    async def ready(self) -> bool:
        return True


@serve.deployment(ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=128)
class HostDeployment:
    def __init__(self, settings: Settings, base: str | None):
        _threads(settings)
        self.base = base
        self.replica = f"{ray.get_runtime_context().get_node_id()}/{os.getpid()}"
        self.local = LocalBackend(settings)
        self.composer = self.local.composer(base)
        if base is not None:
            _ = self.composer.host  # load the base and every adapter now
        _warm(self.composer)

    async def complete(self, queries, prompts, router, config, settings):
        # whole-model rows come back unrun: the ingress sends them to the model deployment
        served = await self.local.complete(
            self.base, queries, prompts, router, config, settings, hosts_only=True
        )
        served.replica = self.replica
        return served

    async def execute(self, prompts, plans, settings):
        # no request-level batching here: the host's decoding loop batches every request's rows
        # between steps (continuous batching), across the replica's concurrent requests
        return await self.local.execute(self.base, prompts, plans, settings)

    async def stream(self, prompt, plan, settings):
        async for item in self.local.stream(self.base, prompt, plan, settings):
            yield item

    async def stats(self) -> dict:
        return {
            "adapters": len(self.composer.resident()),
            "residency": self.composer.adapters.stats(),
            "endpoints": self.composer.endpoints.stats(),
            "pid": os.getpid(),
            "replica": self.replica,
            **self.composer.adapters.batching(),
        }


@serve.deployment(ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=64)
class ModelDeployment:
    def __init__(self, settings: Settings):
        _threads(settings)
        self.local = LocalBackend(settings)

    async def execute(self, prompts, plans, settings):
        return await self.local.execute(None, prompts, plans, settings)

    async def stream(self, prompt, plan, settings):
        async for item in self.local.stream(None, prompt, plan, settings):
            yield item

    async def resident(self) -> list[str]:
        return self.local.composer().models.resident()


@serve.deployment(ray_actor_options={"num_cpus": 0.25}, num_replicas=1, max_ongoing_requests=64)
class EvalDeployment:
    """Batch evaluations (one replica: it holds the jobs), on its own host copy, apart from serving."""

    def __init__(self, settings: Settings):
        _threads(settings)
        self.local = LocalBackend(settings)

    async def start(self, request):
        return await self.local.start_evaluation(request)

    async def get(self, job_id, records):
        return await self.local.evaluation(job_id, records)

    async def list(self):
        return await self.local.evaluations()


@serve.deployment(ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=256)
@serve.ingress()
class Ingress:
    def __init__(self, router, models, hosts: dict, evals, settings: Settings):
        self.settings = settings
        self.backend = RayBackend(router, models, hosts, evals, settings)

    def __serve_build_asgi_app__(self):
        return create_app(self.backend, self.settings, self.backend.registry)
