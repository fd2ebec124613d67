"""Token-level mixture latency: E registered experts, top-2 Arrow routing per token.

Forward latency of one batch on a realistic random base (hidden 512, 8 layers; `--smoke`:
tiny) with E in {4, 16, 64} adapters, against (a) a single LoRA on the same host (the
floor), (b) PEFT's Arrow (`create_arrow_model`, dense over E) on the same adapters, and
(c) a naive per-expert loop (every expert's LoRA on every token, weighted). Targets:
ours / single <= 1.5 at E=64, and ours >= 3x faster than PEFT Arrow at E=64.

    python bench/mixture.py [--smoke] [--threads N]
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from common import CACHE, args, compare, random_adapters, realistic_base, write

from composer.host import Gate, Host, MoLoRALinear
from composer.host.routing import current_routing
from registry.lora import read_lora
from routers.arrow import ARROW
from routers.arrow.fit import fit_prototypes


def naive_forward(self: MoLoRALinear, x: torch.Tensor) -> torch.Tensor:
    """Every installed expert's LoRA on every token, then weighted: the dense baseline."""
    y = self.base_layer(x)
    routing = current_routing()
    x2, y2 = x.reshape(-1, self.in_features), y.reshape(-1, self.out_features).clone()
    assigned = routing.assign(self, x2) if routing is not None and any(self.rank) else None
    if assigned is None:
        return y
    slots, weights = assigned
    dense = torch.zeros(x2.shape[0], len(self.rank), dtype=x.dtype, device=x.device)
    keep = slots >= 0
    dense[keep.nonzero(as_tuple=True)[0], slots[keep]] = weights[keep]
    for s, (off, r) in enumerate(zip(self.offset, self.rank)):
        if r:
            A, Bt = self.A_rows[off : off + r], self.B_rows[off : off + r]
            y2 += dense[:, s : s + 1] * self.scale[s] * ((x2 @ A.T) @ Bt)
    return y2.view_as(y)


@contextmanager
def naive_layers():
    fast = MoLoRALinear.forward
    MoLoRALinear.forward = naive_forward
    try:
        yield
    finally:
        MoLoRALinear.forward = fast


def main() -> None:
    a = args(__doc__.splitlines()[0])
    smoke = a.smoke
    hidden, layers, batch, seq = (128, 2, 2, 16) if smoke else (512, 8, 4, 128)
    sizes = [4, 8] if smoke else [4, 16, 64]
    repeat = 2 if smoke else 10
    root = CACHE / f"mixture-h{hidden}-l{layers}"
    base = realistic_base(root / "base", hidden=hidden, layers=layers, heads=4 if smoke else 8)
    paths = random_adapters(base, root / "adapters", max(sizes))
    host = Host.load(base, device=a.device, dtype=a.dtype)
    ids = torch.randint(3, len(host.tokenizer), (batch, seq), generator=torch.Generator().manual_seed(0))
    ids = ids.to(a.device)
    results = [_measure(host, paths, base, E, ids, repeat) for E in sizes]
    last = results[-1]
    targets = {
        "ours/single <= 1.5 at the largest E": last["ours/single"] <= 1.5,
        "peft/ours >= 3 at the largest E": last["peft/ours"] >= 3,
    }
    write(
        "mixture",
        a,
        results,
        targets,
        [
            "experts",
            "ours_ms",
            "single_lora_ms",
            "peft_arrow_ms",
            "naive_loop_ms",
            "ours/single",
            "peft/ours",
            "naive/ours",
        ],
    )


def _measure(host: Host, paths, base, E: int, ids: torch.Tensor, repeat: int) -> dict:
    """One row: E experts installed (with Arrow prototypes), all four variants timed interleaved."""
    for i, p in enumerate(paths[:E]):
        name = f"e{i:03d}"
        if name not in host.slots:
            host.add_adapter(name, p)
            host.set_vectors(name, "arrow", fit_prototypes(read_lora(p)))
    batch = ids.shape[0]
    routing = host.routing([Gate("arrow", ARROW.score, top_k=2)] * batch)
    peft_model = _peft_arrow(base, paths[:E]).to(host.device, host.model.dtype)

    def naive_run():
        with naive_layers():
            host.logits(ids, routing=routing)

    with torch.no_grad():
        t = compare(
            {
                "ours": lambda: host.logits(ids, routing=routing),
                "single": lambda: host.logits(ids, mixtures=[{"e000": 1.0}] * batch),
                "naive": naive_run,
                "peft": lambda: peft_model(input_ids=ids),
            },
            repeat,
        )
    ours, single, naive, peft = (t[k]["p50_ms"] for k in ("ours", "single", "naive", "peft"))
    row = {
        "experts": E,
        "ours_ms": ours,
        "single_lora_ms": single,
        "peft_arrow_ms": peft,
        "naive_loop_ms": naive,
        "ours/single": ours / single,
        "peft/ours": peft / ours,
        "naive/ours": naive / ours,
        "tokens": ids.numel(),
    }
    print(row, flush=True)
    return row


def _peft_arrow(base, paths):
    from peft import ArrowConfig, create_arrow_model
    from transformers import AutoModelForCausalLM

    return create_arrow_model(
        AutoModelForCausalLM.from_pretrained(base),
        [str(p) for p in paths],
        ArrowConfig(top_k=2, router_temperature=1.0),
    ).eval()


if __name__ == "__main__":
    main()
