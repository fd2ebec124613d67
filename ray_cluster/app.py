"""Build the Composer Serve application.

Contract: `build(settings)` -> a Serve `Application`: the ingress bound to the router
deployment, the model deployment, one host deployment per registered base model (named
`Host:<base>`) and the evaluation deployment. `app_builder(args)` is the same for `serve run` / `serve deploy`
config files (`import_path: ray_cluster.app:app_builder`); `args` override the
environment's settings (`Settings.from_env`). Config files bind beyond loopback, so
`app_builder` refuses to build without COMPOSER_API_KEY unless `args` say
`allow_no_key: true` (a private network you trust).
"""

from __future__ import annotations

import os

from composer.settings import Settings
from ray_cluster.deployments import EvalDeployment, HostDeployment, Ingress, ModelDeployment, RouterDeployment


def build(settings: Settings):
    bases = [r.name for r in settings.registry().list(kind="base")]
    hosts = {b: HostDeployment.options(name=f"Host:{b}").bind(settings, b) for b in bases}
    return Ingress.bind(
        RouterDeployment.bind(settings),
        ModelDeployment.bind(settings),
        hosts,
        EvalDeployment.bind(settings),
        settings,
    )


def app_builder(args: dict):
    args = dict(args or {})
    open_ok = bool(args.pop("allow_no_key", False))
    if isinstance(args.get("allowed_roots"), str):
        args["allowed_roots"] = tuple(p for p in args["allowed_roots"].split(os.pathsep) if p)
    settings = Settings.from_env(**args)
    if not settings.api_key and not open_ok:
        raise ValueError(
            "COMPOSER_API_KEY is not set: a Serve config binds beyond loopback, so Composer needs a key "
            "(or args.allow_no_key: true on a network you trust)"
        )
    return build(settings)
