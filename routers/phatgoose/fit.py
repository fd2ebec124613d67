"""PHATGOOSE gate fitting: post-hoc, from one expert's own examples, base and LoRA frozen.

Contract: `fit_gates(host, lora, examples, config)` installs the expert (a
`registry.lora.LoraWeights`) on `host` — a frozen, private mixture-of-LoRA host, so the
expert's delta is computed exactly as when it is served: plain, DoRA, biases, Conv1D —
and runs the model with every token's weight for it at each module it adapts set to
sigmoid(v · x), v in R^{d_in} zero-initialised (`host.routed(SigmoidGates(...))`;
`init_centroid=c` starts v at c times the unit mean hidden state of the expert's examples,
the hidden router's vector: measured, not the default); trains only the v's with the LM
loss on the examples' completions (or on the prompts, for prompt-only examples) and
returns ({module: v}, stats). The expert is removed afterwards:
no parameter of the model or the adapter changes. `GATES` is the per-expert artifact
(fitter "phatgoose", phatgoose/gates.safetensors), fitted on the context's fitting host.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

import torch
from pydantic import ValidationError

from registry.lora import read_lora
from routers.activations import example_rows, mean_inputs, own_examples, right_padded
from routers.artifacts import Artifact
from routers.base import RouterError
from routers.phatgoose.config import GateFitConfig
from routers.token import vectors_to_bytes


class SigmoidGates:
    """A routing (see composer.host.routing) giving one slot, at each module with a gate
    vector, every token the weight sigmoid(v_module · x) (the one-slot form of `assign`)."""

    def __init__(self, slot: int, gates: dict[str, torch.Tensor]):
        self.slot, self.gates = slot, gates

    def per_row(self):
        return None

    def assign(self, layer, x: torch.Tensor):
        v = self.gates.get(layer.path)
        if v is None:
            return None
        return self.slot, torch.sigmoid(x.float() @ v).unsqueeze(-1)  # gates train in float32


def fit_gates(
    host,
    lora,
    examples: Sequence[dict],
    config: GateFitConfig | None = None,
    progress=lambda steps, **_: steps,
) -> tuple[dict[str, torch.Tensor], dict]:
    cfg = config or GateFitConfig()
    rows = example_rows(host, examples[: cfg.max_examples])
    if not rows:
        raise RouterError("PHATGOOSE gates need at least one example of the expert")
    dev = host.device
    gates = {m: torch.zeros(d.A.shape[1], device=dev) for m, d in lora.modules.items()}
    if cfg.init_centroid:  # the hidden router's vectors (its default: 64 examples)
        for m, c in mean_inputs(host, lora, examples[:64]).items():
            gates[m] = cfg.init_centroid * c.to(dev) / c.norm()
    gates = {m: v.requires_grad_(True) for m, v in gates.items()}
    opt = torch.optim.AdamW(list(gates.values()), lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng, losses = random.Random(cfg.seed), []
    name = "__phatgoose-fit__"
    routing = SigmoidGates(host.add_adapter(name, lora), gates)
    try:
        for _ in progress(range(cfg.steps), desc="phatgoose gates"):
            batch = right_padded(
                rng.sample(rows, min(cfg.batch_size, len(rows))), host.tokenizer.pad_token_id
            )
            batch = {k: t.to(dev) for k, t in batch.items()}
            with host.routed(routing):
                loss = host.model(**batch).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(loss.item())
    finally:
        host.remove_adapter(name)
    stats = {
        "steps": cfg.steps,
        "lr": cfg.lr,
        "batch_size": cfg.batch_size,
        "examples": len(rows),
        "loss_first": round(losses[0], 4),
        "loss_last": round(losses[-1], 4),
    }
    return {m: v.detach().cpu().clone() for m, v in gates.items()}, stats


def _fit(ctx, record, path: Path, **options) -> tuple[bytes, dict]:
    try:
        cfg = GateFitConfig(**options)
    except ValidationError as e:
        raise RouterError(
            f"bad PHATGOOSE fit options: {e.errors()[0]['loc']}: {e.errors()[0]['msg']}"
        ) from None
    with ctx.fit_lock:
        gates, stats = fit_gates(
            ctx.fitting_host(), read_lora(path), own_examples(record), cfg, progress=ctx.progress
        )
    return vectors_to_bytes(gates), {
        "format": "safetensors",
        **stats,
        "config": json.loads(cfg.model_dump_json()),
    }


GATES = Artifact("phatgoose", "phatgoose", "gates.safetensors", _fit)
