"""Shared pieces of the token-level routers (PHATGOOSE, Arrow, GLIDER).

Contract:
- `GateKind(name, artifact, prepare, score)`: a kind of per-token gate. Each expert carries
  one vector per adapted module (`artifact`: safetensors, module path -> [d_in]); `prepare`
  maps a stored vector to what the host keeps, and `score(x [N, d], V [S, m·d]) -> [N, S]`
  scores tokens against the kept vectors of S experts (m = 1 but for kinds with several
  rows per expert, flattened and zero-padded: SpectR). A method registers its kind with
  `register_method(..., gate=KIND)`; `gate_kinds()` lists every registered kind.
- `TokenConfig`: `top_k`, `temperature`, `top_p` (dynamic-k: each token keeps the fewest
  experts whose softmax mass over all candidates reaches p, at most `top_k`: harder tokens
  use more experts) and `experts` (restrict the candidates; default every expert of the
  base) — per request, like every router config.
- `token_plan(router, kind, bias=None, scores=None, note="", experts=None)` -> a
  `RoutingPlan` with mode "token": the executor routes every token of the row through the
  host's gates of `kind`, among `experts` (default: the router's candidates).
- `vectors_to_bytes` / `vectors_from_bytes` (de)serialise {module: vector}.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from pydantic import Field
from safetensors.torch import load, save

from routers.artifacts import Artifact
from routers.base import GateSpec, Router, RouterConfig, RouterError, RoutingPlan, methods


@dataclass(frozen=True)
class GateKind:
    name: str
    artifact: Artifact
    prepare: Callable[[torch.Tensor], torch.Tensor]
    score: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def gate_kinds() -> dict[str, GateKind]:
    return {m.gate.name: m.gate for m in methods() if m.gate is not None}


class TokenConfig(RouterConfig):
    top_k: int = Field(2, ge=1, le=64, description="experts kept per token per module")
    temperature: float = Field(1.0, gt=0, description="softmax temperature over the kept scores")
    top_p: float | None = Field(
        None,
        gt=0,
        le=1,
        description="dynamic-k: keep the fewest experts whose softmax mass reaches p (at most top_k)",
    )
    experts: list[str] | None = Field(None, description="candidate experts (default: all of the base)")


def vectors_to_bytes(vectors: dict[str, torch.Tensor]) -> bytes:
    return save({m: v.detach().float().contiguous() for m, v in vectors.items()})


def vectors_from_bytes(data: bytes) -> dict[str, torch.Tensor]:
    return load(data)


def candidates(router: Router) -> list[str]:
    known = router.ctx.adapter_names
    wanted = router.config.experts
    if wanted is None:
        return known
    unknown = sorted(set(wanted) - set(known))
    if unknown:
        raise RouterError(
            f"router {router.name!r}: unknown expert(s) {', '.join(unknown)}; "
            f"known: {', '.join(known) or '(none)'}"
        )
    return list(dict.fromkeys(wanted))


def token_plan(
    router: Router,
    kind: str,
    bias: dict[str, float] | None = None,
    scores: dict[str, float] | None = None,
    note: str = "",
    experts: list[str] | None = None,
) -> RoutingPlan:
    experts = candidates(router) if experts is None else experts
    if not experts:
        return router.fallback("no experts are registered for this base model")
    cfg = router.config
    gate = GateSpec(kind=kind, top_k=cfg.top_k, temperature=cfg.temperature, top_p=cfg.top_p, bias=bias or {})
    keep = (
        f"top-{cfg.top_k}"
        if cfg.top_p is None
        else f"the fewest reaching mass {cfg.top_p} (at most {cfg.top_k})"
    )
    what = f"per token, per module: {keep} of {len(experts)} experts by {kind} gates" + note
    return RoutingPlan(
        router=router.name, mode="token", experts=experts, scores=scores or {}, gate=gate, explanation=what
    )
