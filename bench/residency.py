"""Adapter residency: 1,000 registered adapters served by a host that holds 64 at a time.

Registers, on the realistic random bench base (hidden 512, 8 layers; `--smoke`: tiny, 40
adapters, budget 8), N rank-8 LoRA adapters straight into a registry (no post-hoc fitting:
select plans need none), then serves one request per adapter, in a shuffled order, through
the in-process API with COMPOSER_MAX_ADAPTERS = budget. Reports: every request served; the
process RSS against the base model's plus the budget's bytes (target: <= base + budget +
15%), where "base" is the host serving with no adapter: loaded, then one request on the base
model alone (that first request's working memory — about 90 MB here: activations, the
allocator's caches — is the base's, not the adapters'; the RSS of the host only loaded is
reported too); loads, evictions; and the latency of a request whose adapter is cold (loaded
for it) against one whose adapter is warm (resident), p50 of each.

    python bench/residency.py [--smoke] [--threads N]
"""

from __future__ import annotations

import os
import random
import tempfile
import time
from pathlib import Path

import psutil
from common import CACHE, args, percentiles, random_adapters, realistic_base, write

from composer import Composer
from composer.settings import Settings
from registry import Registry
from routers import RoutingPlan


def main() -> None:
    a = args(__doc__.splitlines()[0])
    hidden, layers, n, budget = (128, 2, 40, 8) if a.smoke else (512, 8, 1000, 64)
    root = CACHE / f"mixture-h{hidden}-l{layers}"
    base = realistic_base(root / "base", hidden=hidden, layers=layers, heads=4 if a.smoke else 8)
    paths = random_adapters(base, root / f"adapters-{n}", n)
    with tempfile.TemporaryDirectory(dir=CACHE) as home:
        reg = Registry(home=Path(home))
        reg.register(base, "bench-base", kind="base")
        for i, p in enumerate(paths):
            reg.register(p, f"a{i:04d}", base="bench-base")
        settings = Settings(
            home=home,
            max_adapters=budget,
            quiet=True,
            device=str(a.device),
            dtype=str(a.dtype).removeprefix("torch."),
        )
        c = Composer(reg, settings=settings)
        proc = psutil.Process(os.getpid())
        c.host  # noqa: B018 - the base model, no adapter yet
        loaded_rss = proc.memory_info().rss
        c.execute(["sample text"], [RoutingPlan.direct("bench-base", base=True)], max_new_tokens=4)
        base_rss = proc.memory_info().rss  # the base serving, no adapter
        names = [f"a{i:04d}" for i in range(n)]
        random.Random(0).shuffle(names)
        cold, warm, served = [], [], 0
        for name in names:
            for kind in ("cold", "warm"):  # first request loads it; a second finds it resident
                t0 = time.perf_counter()
                (out,) = c.execute(["sample text"], [RoutingPlan.direct(name)], max_new_tokens=4)
                (cold if kind == "cold" else warm).append(time.perf_counter() - t0)
                served += bool(out.token_ids)
        rss = proc.memory_info().rss
        stats = c.adapters.stats()
        budget_bytes = budget * c.adapters.size(reg.get(names[0]))
        bound = (base_rss + budget_bytes) * 1.15
        results = [
            {
                "adapters": n,
                "budget": budget,
                "served": served,
                "requests": 2 * n,
                "loaded_rss_mb": loaded_rss / 2**20,
                "base_rss_mb": base_rss / 2**20,
                "budget_mb": budget_bytes / 2**20,
                "rss_mb": rss / 2**20,
                "rss/(base+budget)": rss / (base_rss + budget_bytes),
                "rss/(loaded+budget)": rss / (loaded_rss + budget_bytes),
                "loads": stats["loads"],
                "evictions": stats["evictions"],
                "cold_p50_ms": percentiles(cold)["p50_ms"],
                "warm_p50_ms": percentiles(warm)["p50_ms"],
                "cold/warm": percentiles(cold)["p50_ms"] / percentiles(warm)["p50_ms"],
            }
        ]
    write(
        "residency",
        a,
        results,
        {"every request served": served == 2 * n, "rss <= (base + budget) * 1.15": rss <= bound},
        [
            "adapters",
            "budget",
            "served",
            "loaded_rss_mb",
            "base_rss_mb",
            "budget_mb",
            "rss_mb",
            "rss/(base+budget)",
            "rss/(loaded+budget)",
            "loads",
            "evictions",
            "cold_p50_ms",
            "warm_p50_ms",
            "cold/warm",
        ],
    )


if __name__ == "__main__":
    main()
