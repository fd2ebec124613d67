"""Registry reads on the request path, at 10 / 1,000 / 10,000 registered experts (SQLite).

Every routed request lists the experts of its base (the host follows the registry; routers
read the expert set), often several times. `Registry.list` answers from memory while the
database's revision token is unchanged: one small query. Baseline, in the same run: the
same call when the registry did change, which reads and decodes every expert row (each
with 8 examples). Synthetic rows, written through the registry's own transaction so the
token moves as for a real registration. Target: <= 2 ms p50 at the largest size while the
registry is unchanged.

    python bench/registry_reads.py [--smoke]
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from common import args, compare, write

from registry import Registry
from registry.db import Expert

BASE = "bench-base"


def populate(reg: Registry, n: int) -> None:
    examples = [
        {"prompt": f"an example prompt of this expert, number {j}", "completion": None} for j in range(8)
    ]
    config = {"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}
    with reg._tx() as s:  # the registry's own transaction: the write replaces the revision token
        s.add_all(
            Expert(
                name=f"e{i:05d}",
                version=1,
                kind="lora",
                base_model=BASE,
                uri=f"objects/lora/e{i:05d}/v1",
                sha256={"adapter_model.safetensors": "0" * 64},
                digest="0" * 64,
                description="bench expert",
                tags=["bench"],
                domains=["bench"],
                examples=examples,
                config=config,
                status="ready",
            )
            for i in range(n)
        )


def main() -> None:
    a = args(__doc__.splitlines()[0])
    sizes = [10, 100] if a.smoke else [10, 1000, 10000]
    repeat = 5 if a.smoke else 30
    results = []
    with tempfile.TemporaryDirectory(prefix="regbench") as tmp:
        for n in sizes:
            reg = Registry(home=Path(tmp) / f"r{n}")
            populate(reg, n)

            def changed(reg=reg):  # what the call costs after a write: a full read
                reg._lists.clear()
                return reg.list(kind="lora", base=BASE)

            t = compare(
                {"changed": changed, "unchanged": lambda reg=reg: reg.list(kind="lora", base=BASE)}, repeat
            )
            assert len(reg.list(kind="lora", base=BASE)) == n
            row = {
                "experts": n,
                "changed_ms": t["changed"]["p50_ms"],
                "unchanged_ms": t["unchanged"]["p50_ms"],
                "speedup": t["changed"]["p50_ms"] / t["unchanged"]["p50_ms"],
            }
            print(row, flush=True)
            results.append(row)
            reg.close()
    last = results[-1]
    write(
        "registry_reads",
        a,
        results,
        {f"unchanged read <= 2 ms p50 at {last['experts']} experts": last["unchanged_ms"] <= 2.0},
        ["experts", "changed_ms", "unchanged_ms", "speedup"],
    )


if __name__ == "__main__":
    main()
