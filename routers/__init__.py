"""Composer's router zoo: every routing method, one folder each, registered by name.

    import routers
    routers.names()                              # ['bench_coe', 'centroid', ...]
    router = routers.build("retrieval", ctx, threshold=0.3)
    plans = router.route([routers.Query(prompt="...")])

Each method folder has `config.py` (pydantic config), `router.py` (the `Router` subclass,
registered with `@register_router`) and, where it is fitted over all experts, `fit.py`.
Importing this package registers them all; heavy libraries (faiss, sentence-transformers)
load only when a router first needs them.
"""
from routers import (  # noqa: F401
    arrow,
    bench_coe,
    centroid,
    coe,
    ensemble,
    glider,
    loraretriever,
    oracle,
    phatgoose,
    retrieval,
    uniform,
)
from routers.base import (
           GateSpec,
           Query,
           Router,
           RouterConfig,
           RouterError,
           RoutingPlan,
           build,
           names,
           parse_config,
           schemas,
)
from routers.context import RouterContext

__all__ = ["GateSpec", "Query", "Router", "RouterConfig", "RouterContext", "RouterError", "RoutingPlan", "build", "names",
           "parse_config", "schemas"]
