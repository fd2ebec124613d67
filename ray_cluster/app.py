"""Build the Composer Serve application.

Contract: `build(settings)` -> a Serve `Application`: the ingress bound to the router
deployment, the model deployment and one host deployment per registered base model
(named `Host:<base>`). `app_builder(args)` is the same for `serve run` / `serve deploy`
config files (`import_path: ray_cluster.app:app_builder`); `args` override the
environment's settings (`Settings.from_env`).
"""
from __future__ import annotations

from composer.serving import Settings
from ray_cluster.deployments import HostDeployment, Ingress, ModelDeployment, RouterDeployment
from registry import Registry


def build(settings: Settings):
    bases = [r.name for r in Registry(home=settings.home).list(kind="base")]
    hosts = {b: HostDeployment.options(name=f"Host:{b}").bind(settings, b) for b in bases}
    return Ingress.bind(RouterDeployment.bind(settings), ModelDeployment.bind(settings), hosts, settings)


def app_builder(args: dict):
    args = dict(args or {})
    if "allowed_roots" in args and isinstance(args["allowed_roots"], str):
        args["allowed_roots"] = tuple(args["allowed_roots"].split(":"))
    return build(Settings.from_env(**args))
