"""Dispatch cost of the adapter paths: what one forward asks of the device, per routing kind.

On a GPU a small model's forward is bound by what the host does per module (operator
dispatch, kernel launches, waits for the device, host-to-device copies), not by arithmetic.
For a batch of 16 rows (1 token each: a decoding step; and 32 tokens: a prefill) on the
realistic random base (hidden 512, 8 layers, 32 adapted modules; `--smoke`: tiny) with 8
adapters, this counts with torch.profiler, for the base rows, select rows (8 adapters) and
Arrow top-2 over 8: aten operators, kernel launches, device synchronisations and memcpys per
forward, beside its latency. The counts are the figures to drive down (launches and syncs
are zero on the CPU, where the operator count is the proxy); the base rows are the floor.

    python bench/dispatch.py [--smoke] [--device cuda]
"""

from __future__ import annotations

import torch
from common import CACHE, args, random_adapters, realistic_base, sync, timed, write
from torch.profiler import ProfilerActivity, profile

from composer.host import Gate, Host
from registry.lora import read_lora
from routers.arrow import ARROW
from routers.arrow.fit import fit_prototypes

ROWS, N_ADAPTERS = 16, 8


def main() -> None:
    a = args(__doc__.splitlines()[0])
    hidden, layers = (128, 2) if a.smoke else (512, 8)
    root = CACHE / f"mixture-h{hidden}-l{layers}"
    base = realistic_base(root / "base", hidden=hidden, layers=layers, heads=4 if a.smoke else 8)
    paths = random_adapters(base, root / "adapters", N_ADAPTERS)
    host = Host.load(base, device=a.device, dtype=a.dtype)
    names = [f"e{i:03d}" for i in range(N_ADAPTERS)]
    for n, p in zip(names, paths):
        host.add_adapter(n, p)
        host.set_vectors(n, "arrow", fit_prototypes(read_lora(p)))
    kinds = {
        "base": {"mixtures": [{}] * ROWS},
        "select": {"mixtures": [{names[i % N_ADAPTERS]: 1.0} for i in range(ROWS)]},
        "arrow top-2": {"routing": host.routing([Gate("arrow", ARROW.score, top_k=2)] * ROWS)},
    }
    results = []
    for tokens in (1, 32):
        ids = torch.randint(
            3, len(host.tokenizer), (ROWS, tokens), generator=torch.Generator().manual_seed(0)
        )
        ids = ids.to(a.device)
        for kind, kw in kinds.items():
            results.append(_row(host, ids, kind, kw, repeat=3 if a.smoke else 10))
    floor = {r["tokens"]: r for r in results if r["routing"] == "base"}
    for r in results:
        r["ops/base"] = r["aten_ops"] / floor[r["tokens"]]["aten_ops"]
        r["ms/base"] = r["ms"] / floor[r["tokens"]]["ms"]
    write(
        "dispatch",
        a,
        results,
        {},
        ["routing", "tokens", "ms", "aten_ops", "launches", "syncs", "memcpys", "ops/base", "ms/base"],
    )


def _row(host: Host, ids: torch.Tensor, kind: str, kw: dict, repeat: int) -> dict:
    with torch.no_grad():
        ms = timed(lambda: host.logits(ids, **kw), repeat=repeat)["p50_ms"]
        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if ids.device.type == "cuda" else [])
        with profile(activities=acts) as prof:
            host.logits(ids, **kw)
            sync()
    count = {e.key: e.count for e in prof.key_averages()}

    def total(*words: str) -> int:
        return sum(c for k, c in count.items() if any(w in k for w in words))

    row = {
        "routing": kind,
        "rows": ids.shape[0],
        "tokens": ids.shape[1],
        "ms": ms,
        "aten_ops": sum(c for k, c in count.items() if k.startswith("aten::")),
        "launches": total("LaunchKernel", "cuLaunch"),
        "syncs": total("Synchronize"),
        "memcpys": total("Memcpy"),
    }
    print(row, flush=True)
    return row


if __name__ == "__main__":
    main()
