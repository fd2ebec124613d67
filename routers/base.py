"""The router contract: a plan type, a narrow base class, and a name → (class, config) registry.

Contract:
- A router is a `Router` subclass with one abstract method, `route(batch) -> list[RoutingPlan]`
  (one plan per query, same order).
- A routing method is registered once, by its folder's `__init__.py`:
  `register_method(name, router, config, artifacts=(), gate=None, fit=None)` names its
  router class and pydantic config, the per-expert artifacts it reads (`routers.artifacts.
  Artifact`: fitted at registration, from that expert alone), the gate kind it scores inside
  the host (`routers.token.GateKind`, token-level methods) and `fit(ctx, **options)` when it
  is fitted over all experts on demand (CoE, Bench-CoE). Everything else — which artifacts
  a registration fits, which gate vectors a host installs, which gate kinds a plan may name,
  what `composer fit` accepts — is derived from these registrations (`methods()`).
- `build(name, ctx, **config)` validates the config (unknown keys are errors) and returns the
  router; an unknown name or a bad config raises `RouterError` with a message fit for a user.
- A `RoutingPlan` is JSON-able and says what the executor does: `mode` select / merge /
  ensemble (experts + weights), token (gates inside the host: `gate` says which kind, top-k,
  temperature and per-expert logit bias; `experts` are the candidates), or base; plus
  the scores the decision came from, a one-line `explanation`, and `fallback` (the reason)
  when the router abstained.
Routers only *load* fitted artifacts through `ctx`; fitting lives in each method's `fit.py`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

Mode = Literal["select", "merge", "ensemble", "token", "base"]


class RouterError(ValueError):
    """Unknown router, bad router config, or a router that cannot run (e.g. not fitted)."""


class Query(BaseModel):
    """One request as routers see it. `task`/`category` are known only in evaluations (oracle)."""

    prompt: str
    task: str | None = None
    category: str | None = None


class GateSpec(BaseModel):
    """Per-token routing inside the host (mode "token"): a registered gate kind, top-k,
    temperature, a per-expert logit bias, and optionally dynamic-k: top-p (each token keeps
    the fewest experts whose softmax mass reaches p, at most top-k)."""

    kind: str
    top_k: int = Field(2, ge=1)
    temperature: float = Field(1.0, gt=0)
    top_p: float | None = Field(None, gt=0, le=1)
    bias: dict[str, float] = Field(default_factory=dict)  # expert -> logit added at every token

    @field_validator("kind")
    @classmethod
    def _registered(cls, kind: str) -> str:
        known = sorted({m.gate.name for m in _METHODS.values() if m.gate is not None})
        if kind not in known:
            raise ValueError(f"unknown gate kind {kind!r}; known: {', '.join(known)}")
        return kind


class RoutingPlan(BaseModel):
    router: str
    mode: Mode
    experts: list[str] = Field(default_factory=list)
    weights: list[float] = Field(default_factory=list)
    scores: dict[str, float] = Field(default_factory=dict)
    explanation: str = ""
    fallback: str | None = None  # why the router abstained, when it did
    gate: GateSpec | None = None

    def mixture(self) -> dict[str, float]:
        return dict(zip(self.experts, self.weights))

    def selected(self) -> str | None:
        """The one expert a "select" plan serves the request with; None for other modes."""
        return self.experts[0] if self.mode == "select" and self.experts else None

    @classmethod
    def direct(cls, name: str, base: bool = False) -> RoutingPlan:
        """No routing: the request named an expert (or, `base=True`, the base model)."""
        if base:
            return cls(router="direct", mode="base", explanation=f"requested the base model {name}")
        return cls(
            router="direct",
            mode="select",
            experts=[name],
            weights=[1.0],
            explanation=f"requested expert {name}",
        )


class RouterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # alpha=NaN/Inf is an error


class Router(ABC):
    name: ClassVar[str]
    config_cls: ClassVar[type[RouterConfig]]

    def __init__(self, ctx, config: RouterConfig):
        self.ctx, self.config = ctx, config

    @abstractmethod
    def route(self, batch: Sequence[Query]) -> list[RoutingPlan]:
        """One plan per query, in order."""

    # helpers shared by the query-level routers
    def plan(
        self, mode: Mode, experts: Sequence[str], weights: Sequence[float] | None = None, **kw: Any
    ) -> RoutingPlan:
        experts = list(experts)
        weights = (
            list(weights) if weights is not None else [1.0 / len(experts)] * len(experts) if experts else []
        )
        return RoutingPlan(
            router=self.name, mode=mode if experts else "base", experts=experts, weights=weights, **kw
        )

    def fallback(self, reason: str, scores: dict[str, float] | None = None) -> RoutingPlan:
        """Abstain: the configured fallback expert (`config.fallback`) or the base model."""
        target = getattr(self.config, "fallback", None)
        where = f"fell back to expert {target}" if target else "fell back to the base model"
        return self.plan(
            "select",
            [target] if target else [],
            scores=scores or {},
            explanation=f"{reason}: {where}",
            fallback=reason,
        )


@dataclass(frozen=True)
class Method:
    """One routing method as registered by its folder (see the module contract)."""

    name: str
    router: type[Router]
    config: type[RouterConfig]
    artifacts: tuple = ()  # routers.artifacts.Artifact: per-expert, fitted at registration
    gate: Any = None  # routers.token.GateKind: scored per token inside the host
    fit: Callable[..., dict] | None = None  # fit(ctx, **options) -> summary, over all experts


_METHODS: dict[str, Method] = {}


def register_method(
    name: str,
    router: type[Router],
    config: type[RouterConfig],
    *,
    artifacts: Sequence = (),
    gate: Any = None,
    fit: Callable[..., dict] | None = None,
) -> Method:
    if name in _METHODS:
        raise RuntimeError(f"router {name!r} registered twice")
    router.name, router.config_cls = name, config
    _METHODS[name] = m = Method(name, router, config, tuple(artifacts), gate, fit)
    return m


def methods() -> list[Method]:
    """Every registered method, by name."""
    return [_METHODS[n] for n in sorted(_METHODS)]


def method(name: str) -> Method:
    if name not in _METHODS:
        raise RouterError(f"unknown router {name!r}; available: {', '.join(names())}")
    return _METHODS[name]


def names() -> list[str]:
    return sorted(_METHODS)


def schemas() -> dict[str, dict]:
    """Router name → (docstring, JSON schema of its config); served by `composer routers`."""
    return {
        m.name: {
            "description": (m.router.__doc__ or "").strip().splitlines()[0] if m.router.__doc__ else "",
            "config": m.config.model_json_schema(),
        }
        for m in methods()
    }


def parse_config(name: str, **config: Any) -> RouterConfig:
    cls = method(name).config
    try:
        return cls(**config)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(map(str, err['loc'])) or 'config'}: {err['msg']}" for err in e.errors()
        )
        raise RouterError(f"bad config for router {name!r}: {problems}") from None


def build(name: str, ctx, **config: Any) -> Router:
    cfg = parse_config(name, **config)
    return method(name).router(ctx, cfg)
