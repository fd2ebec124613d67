"""Build the Composer Serve application.

Contract: `build(settings)` -> a Serve `Application`: the ingress bound to the router
deployment, the model deployment, one host deployment per registered base model (named
`Host:<base>`; with no base model one `Host:(no base)` forwards to endpoint experts), `settings.host_replicas` replicas each asking for `settings.resources()`)
and the evaluation deployment; when the models run on CUDA (`COMPOSER_DEVICE`
cuda, or auto on a cluster with GPUs) each model-holding replica asks Ray for its share of a
GPU (`GPU_SHARE`: a host, the router's fitting host, the model pool and the evaluations
share one device). `app_builder(args)` is the same for `serve run` / `serve deploy`
config files (`import_path: ray_cluster.app:app_builder`); `args` override the
environment's settings (`Settings.from_env`). Config files bind beyond loopback, so
`app_builder` refuses to build without COMPOSER_API_KEY unless `args` say
`allow_no_key: true` (a private network you trust).
"""

from __future__ import annotations

import os

from composer.settings import Settings
from ray_cluster.deployments import EvalDeployment, HostDeployment, Ingress, ModelDeployment, RouterDeployment

# Shares of one GPU per replica when the models run on CUDA: one host, the router (fitting
# host), the model pool and the evaluations fit on one device together.
GPU_SHARE = {"host": 0.5, "router": 0.2, "models": 0.2, "eval": 0.1}


def gpu_shares(settings: Settings) -> dict[str, float]:
    """`GPU_SHARE` when the device is CUDA (named, or auto on a cluster that has GPUs), else none."""
    if settings.device.startswith("cuda"):
        return GPU_SHARE
    if settings.device == "auto":
        import ray

        if ray.is_initialized() and ray.cluster_resources().get("GPU", 0) > 0:
            return GPU_SHARE
    return {}


def _on_gpu(deployment, share: float | None, resources: dict | None = None, **options):
    """The deployment with `num_gpus` (when it gets a share) and custom `resources` added to its
    own actor options."""
    actor = dict(deployment.ray_actor_options or {})
    if share:
        actor["num_gpus"] = share
    if resources:
        actor["resources"] = resources
    if actor != (deployment.ray_actor_options or {}):
        options["ray_actor_options"] = actor
    return deployment.options(**options) if options else deployment


def build(settings: Settings):
    bases = [r.name for r in settings.registry().list(kind="base")] or [None]  # None: endpoints only
    gpus = gpu_shares(settings)
    hosts = {
        b: _on_gpu(
            HostDeployment,
            gpus.get("host"),
            settings.resources(),
            name=f"Host:{b or '(no base)'}",
            num_replicas=settings.host_replicas,
        ).bind(settings, b)
        for b in bases
    }
    return Ingress.bind(
        _on_gpu(RouterDeployment, gpus.get("router")).bind(settings),
        _on_gpu(ModelDeployment, gpus.get("models")).bind(settings),
        hosts,
        _on_gpu(EvalDeployment, gpus.get("eval")).bind(settings),
        settings,
    )


def app_builder(args: dict):
    args = dict(args or {})
    open_ok = bool(args.pop("allow_no_key", False))
    if isinstance(args.get("allowed_roots"), str):
        args["allowed_roots"] = tuple(p for p in args["allowed_roots"].split(os.pathsep) if p)
    if isinstance(args.get("allowed_endpoints"), str):
        args["allowed_endpoints"] = tuple(
            p.strip() for p in args["allowed_endpoints"].split(",") if p.strip()
        )
    settings = Settings.from_env(**args)
    if not settings.api_key and not open_ok:
        raise ValueError(
            "COMPOSER_API_KEY is not set: a Serve config binds beyond loopback, so Composer needs a key "
            "(or args.allow_no_key: true on a network you trust)"
        )
    return build(settings)
