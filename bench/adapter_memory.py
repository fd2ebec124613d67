"""Adapter memory on a host: bytes held per module for mixed ranks, against their real size.

Installs, on a realistic random base (hidden 512, 8 layers; `--smoke`: tiny), 63 rank-8
LoRA adapters and one rank-128 adapter (the mix the issue names) on q/k/v/o, in that order,
then reads every mixture-of-LoRA module's pools: rows held vs rows of the real ranks (the
sum of r over the experts, plus the shared zero row). The ratio is the overhead (target
<= 1.25x); the layout before this change (every expert zero-padded to the largest rank in
stacked [E, r_max, d] tensors) is computed for the same experts, as what it would hold.
Also times adding one more adapter to the full host against adding the first to an empty
one (the others are not copied, except when a pool grows by 1.25x).

    python bench/adapter_memory.py [--smoke] [--threads N]
"""

from __future__ import annotations

import time

from common import CACHE, args, random_adapters, realistic_base, write

from composer.host import Host


def main() -> None:
    a = args(__doc__.splitlines()[0])
    hidden, layers, n_small = (128, 2, 15) if a.smoke else (512, 8, 63)
    big_rank = 32 if a.smoke else 128
    root = CACHE / f"mixture-h{hidden}-l{layers}"
    base = realistic_base(root / "base", hidden=hidden, layers=layers, heads=4 if a.smoke else 8)
    small = random_adapters(base, root / "adapters", n_small)  # rank 8
    (big,) = random_adapters(base, root / f"adapters-r{big_rank}", 1, rank=big_rank, seed=1)
    host = Host.load(base, device=a.device, dtype=a.dtype)
    t0 = time.perf_counter()
    host.add_adapter("e000", small[0])
    first_ms = 1000 * (time.perf_counter() - t0)
    for i, p in enumerate(small[1:], 1):
        host.add_adapter(f"e{i:03d}", p)
    host.add_adapter("big", big)
    ranks = [8] * n_small + [big_rank]
    results = []
    memory = {path: layer.memory() for path, layer in host.layers.items()}
    total = host.memory()
    t0 = time.perf_counter()
    host.add_adapter("one-more", small[1])  # timed only: the table is read before it
    more_ms = 1000 * (time.perf_counter() - t0)
    host.remove_adapter("one-more")
    for path, mem in sorted(memory.items())[:4]:  # one layer's modules: they are all alike
        padded_rows = len(ranks) * max(ranks)
        results.append(
            {
                "module": path,
                "experts": len(ranks),
                "rows_real": mem["rows_real"],
                "rows_held": mem["rows_held"],
                "held/real": mem["rows_held"] / mem["rows_real"],
                "padded_rows": padded_rows,
                "padded/real": padded_rows / mem["rows_real"],
                "bytes_held": mem["bytes"],
            }
        )
    results.append(
        {
            "module": "(all modules)",
            "experts": len(ranks),
            "rows_real": total["rows_real"],
            "rows_held": total["rows_held"],
            "held/real": total["rows_held"] / total["rows_real"],
            "bytes_held": total["bytes"],
            "add_first_ms": first_ms,
            "add_one_more_ms": more_ms,
        }
    )
    worst = max(r["held/real"] for r in results)
    write(
        "adapter_memory",
        a,
        results,
        {"held/real <= 1.25 in every module": worst <= 1.25},
        [
            "module",
            "experts",
            "rows_real",
            "rows_held",
            "held/real",
            "padded/real",
            "add_first_ms",
            "add_one_more_ms",
        ],
    )


if __name__ == "__main__":
    main()
