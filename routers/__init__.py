"""Composer's router zoo: every routing method, one folder each, registered by name.

    import routers
    routers.names()                              # ['arrow', 'bench_coe', 'centroid', ...]
    router = routers.build("retrieval", ctx, threshold=0.3)
    plans = router.route([routers.Query(prompt="...")])

Each method is one folder: `config.py` (pydantic config), `router.py` (the `Router`
subclass), `fit.py` where it fits artifacts, and an `__init__.py` with its one
`register_method(...)` call (router, config, per-expert artifacts, gate kind, fitting over
all experts; see `routers.base`). Importing this package imports every folder, so adding a
router is adding a folder. Heavy libraries (faiss, sentence-transformers) load only when a
router first needs them. This package never imports Composer's core (`composer/`): what
routers need from it (a fitting host, progress bars, expert scoring) is injected through
`RouterContext`.
"""

import importlib
import pkgutil

from routers.base import (
    GateSpec,
    Method,
    Query,
    Router,
    RouterConfig,
    RouterError,
    RoutingPlan,
    build,
    method,
    methods,
    names,
    parse_config,
    schemas,
)
from routers.context import RouterContext

for _folder in pkgutil.iter_modules(__path__):
    if _folder.ispkg:
        importlib.import_module(f"{__name__}.{_folder.name}")

__all__ = [
    "GateSpec",
    "Method",
    "Query",
    "Router",
    "RouterConfig",
    "RouterContext",
    "RouterError",
    "RoutingPlan",
    "build",
    "method",
    "methods",
    "names",
    "parse_config",
    "schemas",
]
