"""Hidden-state centroids: each adapted module's mean input over one expert's own examples.

Contract: `fit_centroids(host, lora, examples, config)` -> ({module: c}, stats): c = the
mean over every token (prompt, completion, eos) of the first `max_examples` examples of the
module's input standardised per token (`routers.activations.mean_inputs`), on `host` (a
private fitting host, as PHATGOOSE's gates) with the expert's weight 0 (the base's hidden
states; `with_expert=True`: weight 1, mttl's default), for every adapted module the forward
reaches. No gradient, no parameter changes. `CENTROIDS` is the per-expert artifact
(fitter "hidden", hidden/centroids.safetensors); it reads only the expert's own examples
(its description when it has none), so registering one expert refits no other.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from pydantic import ValidationError

from registry.lora import read_lora
from routers.activations import mean_inputs, own_examples
from routers.artifacts import Artifact
from routers.base import RouterError
from routers.hidden.config import CentroidFitConfig
from routers.token import vectors_to_bytes


def fit_centroids(
    host, lora, examples: Sequence[dict], config: CentroidFitConfig | None = None, progress=lambda it, **_: it
) -> tuple[dict[str, torch.Tensor], dict]:
    cfg = config or CentroidFitConfig()
    examples = list(examples[: cfg.max_examples])
    if not examples:
        raise RouterError("hidden-state centroids need at least one example of the expert")
    centroids = mean_inputs(host, lora, examples, cfg.with_expert, progress)
    return centroids, {"examples": len(examples), "modules": len(centroids)}


def _fit(ctx, record, path: Path, **options) -> tuple[bytes, dict]:
    try:
        cfg = CentroidFitConfig(**options)
    except ValidationError as e:
        raise RouterError(f"bad hidden fit options: {e.errors()[0]['loc']}: {e.errors()[0]['msg']}") from None
    with ctx.fit_lock:
        centroids, stats = fit_centroids(
            ctx.fitting_host(), read_lora(path), own_examples(record), cfg, ctx.progress
        )
    return vectors_to_bytes(centroids), {
        "format": "safetensors",
        **stats,
        "config": json.loads(cfg.model_dump_json()),
    }


CENTROIDS = Artifact("hidden", "hidden", "centroids.safetensors", _fit)
