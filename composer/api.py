"""The Python API: route and generate over every expert of one base model, in-process.

Contract: `Composer(registry=None, base=None, default_router=None, encoder=None, writer=None,
max_models=None, settings=None)` is a facade over three parts (with no base model registered,
`base` is None: routing over endpoint and whole-model experts, no host, no LoRA): `adapters`
(`composer.adapters.AdapterManager`: which experts the host holds), `executor`
(`composer.executor.Executor`: plans -> host rows / whole models) and `ctx` (the routers'
`RouterContext`). Without `settings` it reads the environment's (`Settings.from_env()`: it
is the Python entry point); every unset argument comes from the settings (`base`: else the
only registered base model; `writer`: GLIDER's instruction writer spec or object).
- `route(prompts, router=None, **config)` -> one `RoutingPlan` per prompt. A prompt is a
  string, or a dict/`Query` with `task`/`category` (needed by the oracle). `direct(expert)`
  is the plan of a request naming an expert (or the base model): no routing.
- `generate(prompts, router=None, expert=None, max_new_tokens=32, ...)` -> one `Completion`
  per prompt: `route` (or `direct`), then `execute(prompts, plans, **settings)` (see the
  executor); `stream(prompt, plan, ...)` and `choose(prompts, plans, choices)` likewise.
- `experts()`: what routing may pick: the servable LoRA experts of this base, then the
  whole-model experts (`kind=model`). `resident()`: adapters the host holds now.
- `inspect(prompts, router=None, **config)` -> per prompt: the plan and, for token-level
  plans, which experts every module chose for every prompt token (`per_token`).
- `register(path, name, fit_options=None, **kw)` registers an expert with its per-expert
  artifacts (`routers.artifacts.fit_expert`: embeddings, gates, prototypes, task embedding)
  committed atomically, then syncs the host; a LoRA must first prove it can be served
  (`composer.probe.prove` on the fitting host: one forward alone, one per gate kind), or
  it is refused and nothing is stored. `remove` drops an expert and its artifacts.
- `fit(name, **options)`: a router fitted over all experts (`coe`, `bench_coe`: its
  registered `fit`), or a per-expert artifact name (`embeddings`, `phatgoose`, `arrow`,
  `glider`, ... with `experts=[...]` optionally): backfills the experts that lack it. This
  and registration are the only places anything is fitted: routing and serving only load.
  `score_experts(rows)` evaluates experts on labelled prompts (Bench-CoE's input).
Bad router names/configs raise `RouterError`; unknown experts `ComposerError`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from typing import Any

from composer.adapters import AdapterManager, load_host
from composer.endpoints import EndpointPool
from composer.endpoints.register import admit
from composer.errors import ComposerError
from composer.executor import Completion, Executor
from composer.host import resolve
from composer.models import ModelPool
from composer.probe import prove
from composer.progress import progress, set_quiet
from composer.settings import Settings
from registry import Registry
from registry.records import ExpertRecord
from routers import Query, RouterContext, RouterError, RoutingPlan, build, method, methods
from routers.artifacts import artifacts, backfill, fit_expert, named
from routers.base import parse_config
from routers.cost import Pricing, calibrate
from routers.encoders import MiniLM
from routers.glider.writers import writer_from_spec
from routers.token import gate_kinds, vectors_from_bytes

__all__ = ["Completion", "Composer", "ComposerError", "as_queries"]


def as_queries(prompts: str | Sequence[str | dict | Query]) -> list[Query]:
    if isinstance(prompts, str):
        prompts = [prompts]
    return [
        p if isinstance(p, Query) else Query(prompt=p) if isinstance(p, str) else Query(**p) for p in prompts
    ]


def fitting_host(path, name: str, device: str = "auto", dtype: str = "auto"):
    """A private, frozen copy of a base model for fitters that run it (never the serving host)."""
    host = load_host(path, name, device, dtype)
    host.model.requires_grad_(False)
    return host


class Composer:
    def __init__(
        self,
        registry: Registry | None = None,
        base: str | None = None,
        default_router: str | None = None,
        encoder=None,
        writer=None,
        max_models: int | None = None,
        settings: Settings | None = None,
    ):
        if settings is None:  # the Python API's entry point: the environment's settings
            settings = Settings.from_env()
            set_quiet(settings.quiet)
        self.settings = settings
        self.registry = registry or settings.registry()
        self.base = self.registry.routing_base(base or settings.base)
        base_rec = self.registry.base(self.base) if self.base else None
        self.default_router = default_router or settings.default_router
        if writer is None or isinstance(writer, str):
            writer = writer_from_spec(
                writer or settings.instruction_writer,
                self.registry,
                settings.instruction_writer_key,
                load_host,
            )
        if encoder is None:  # the query encoder runs where the models do
            encoder = MiniLM(device=str(resolve(settings.device, "float32")[0]))
        self.ctx = RouterContext(
            self.registry,
            self.base,
            encoder,
            experts=self.experts,
            writer=writer,
            fitting_host=None
            if base_rec is None
            else lambda: fitting_host(base_rec.path, base_rec.name, settings.device, settings.dtype),
            progress=progress,
            score=self.score_experts,
            pricing=Pricing(self.registry, settings.price_per_bparam),
        )
        load = functools.partial(load_host, device=settings.device, dtype=settings.dtype)
        self.adapters = AdapterManager(
            self.ctx,
            load=load,
            max_adapters=settings.max_adapters,
            memory_mb=settings.adapter_memory_mb,
            pinned=settings.pinned_adapters,
        )
        self.models = ModelPool(self.registry, max_models or settings.max_models, load=load)
        self.endpoints = EndpointPool(self.registry, settings.allowed_endpoints)
        self.executor = Executor(
            self.adapters,
            self.models,
            lambda: {r.name for r in self.registry.list(kind="model")},
            self.endpoints,
            self.ctx.pricing,
        )

    # -- experts --------------------------------------------------------------------------
    def experts(self) -> list[ExpertRecord]:
        return (
            self.adapters.servable() + self.registry.list(kind="model") + self.registry.list(kind="endpoint")
        )

    @property
    def host(self):
        """The serving host (loaded on first use, following the registry)."""
        return self.adapters.host

    def sync(self) -> None:
        """Make the host (once loaded) hold the registry's current experts."""
        self.adapters.sync()

    def resident(self) -> list[str]:
        return self.adapters.resident()

    def register(
        self, path, name: str, fit_options: dict[str, dict] | None = None, **kw: Any
    ) -> ExpertRecord:
        """Register an expert of this base with its per-expert artifacts; routable at once."""
        kw.setdefault("kind", "lora")
        if kw["kind"] == "lora":
            kw.setdefault("base", self.base)
        kw["fit"] = lambda staged, draft: self._fit_and_prove(staged, draft, fit_options)
        rec = self.registry.register(path, name, **kw)
        self.sync()
        return rec

    def register_endpoint(self, name: str, endpoint: dict, **kw: Any) -> ExpertRecord:
        """Register an endpoint expert (`registry.endpoint` spec: url, model, api_key_env,
        timeout_s) once `composer.endpoints.admit` has shown the server may call it and it
        serves that model; its embeddings commit with it, so routing picks it at once."""
        spec = admit(endpoint, self.settings.allowed_endpoints)
        options = kw.pop("fit_options", None)
        kw["fit"] = lambda staged, draft: fit_expert(self.ctx, draft, staged, options)
        return self.registry.register_endpoint(name, spec, **kw)

    def calibrate_cost(
        self,
        router: str,
        prompts: Sequence[str],
        target_share: float,
        expensive_above: float | None = None,
        **config: Any,
    ) -> dict:
        """λ of `router`'s cost knob that sends `target_share` of `prompts` to the expensive
        experts (`routers.cost.calibrate`); requests then ask `cost_weight: "calibrated"`."""
        probe = dict(config, cost_weight=0.0, max_cost=1e300)  # every expert's plain score
        held = parse_config(router, **probe).model_dump(exclude={"cost_weight", "max_cost"})

        def score(ps):
            return [list(p.scores.items()) for p in self.route(list(ps), router, **probe)]

        return calibrate(self.ctx, router, score, prompts, target_share, held, expensive_above)

    def _fit_and_prove(self, staged, draft, fit_options) -> list:
        """Registration's fitting: a LoRA is proven servable on the fitting host (select), its
        artifacts fitted, then proven again with its token gates; any failure refuses it."""
        if draft.kind == "lora":
            with self.ctx.fit_lock:
                prove(self.ctx.fitting_host(), staged)
        arts = fit_expert(self.ctx, draft, staged, fit_options)
        if draft.kind == "lora":
            found = {(router, key): data for router, key, data, _ in arts}
            vectors = {
                name: vectors_from_bytes(found[(kind.artifact.router, kind.artifact.key_for(self.ctx))])
                for name, kind in gate_kinds().items()
                if (kind.artifact.router, kind.artifact.key_for(self.ctx)) in found
            }
            with self.ctx.fit_lock:
                prove(self.ctx.fitting_host(), staged, vectors)
        return arts

    def remove(self, name: str, version: int | None = None) -> ExpertRecord:
        rec = self.registry.remove(name, version)
        self.models.drop(name)
        self.sync()
        return rec

    # -- routing --------------------------------------------------------------------------
    def router(self, name: str | None = None, **config: Any):
        return build(name or self.default_router, self.ctx, **config)

    def route(self, prompts, router: str | None = None, **config: Any) -> list[RoutingPlan]:
        queries = as_queries(prompts)
        with self.registry.snapshot():  # one registry read for the whole call
            return self.router(router, **config).route(queries) if queries else []

    def direct(self, expert: str) -> RoutingPlan:
        """The plan for a request that names an expert (or the base model): no routing."""
        if expert == self.base:
            return RoutingPlan.direct(expert, base=True)
        names = {r.name for r in self.experts()}
        if expert not in names:
            raise ComposerError(
                f"unknown expert {expert!r} for base {self.base!r}; "
                f"known: {', '.join(sorted(names)) or '(none)'}"
            )
        return RoutingPlan.direct(expert)

    # -- execution ------------------------------------------------------------------------
    def generate(
        self,
        prompts,
        router: str | None = None,
        expert: str | None = None,
        max_new_tokens: int = 32,
        temperature: float = 0.0,
        top_p: float = 1.0,
        chat: bool = True,
        seed: int | None = None,
        **config: Any,
    ) -> list[Completion]:
        queries = as_queries(prompts)
        if expert is not None and (router is not None or config):
            raise ComposerError("give either expert= (no routing) or a router, not both")
        with self.registry.snapshot():  # one registry read for the whole request
            self.sync()
            plans = [self.direct(expert)] * len(queries) if expert else self.route(queries, router, **config)
            return self.execute(
                [q.prompt for q in queries],
                plans,
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                top_p=top_p,
                chat=chat,
                seed=seed,
            )

    def execute(self, prompts: Sequence, plans: Sequence[RoutingPlan], **settings: Any) -> list[Completion]:
        with self.registry.snapshot():
            return self.executor.execute(prompts, plans, **settings)

    def stream(self, prompt, plan: RoutingPlan, **settings: Any) -> Iterator[str | Completion]:
        return self.executor.stream(prompt, plan, **settings)

    def choose(
        self,
        prompts: Sequence,
        plans: Sequence[RoutingPlan],
        choices: Sequence[Sequence[str]],
        chat: bool = True,
        batch_size: int = 64,
    ) -> list[list[float]]:
        return self.executor.choose(prompts, plans, choices, chat, batch_size)

    def inspect(self, prompts, router: str | None = None, chat: bool = True, **config: Any) -> list[dict]:
        queries = as_queries(prompts)
        self.sync()
        return [
            {**plan.model_dump(), "prompt": q.prompt, "per_token": self.executor.trace(q.prompt, plan, chat)}
            for q, plan in zip(queries, self.route(queries, router, **config))
        ]

    # -- fitting --------------------------------------------------------------------------
    def score_experts(
        self,
        rows: Sequence[dict],
        experts: Sequence[str] | None = None,
        max_new_tokens: int = 32,
        batch_size: int = 256,
    ) -> list[dict]:
        """Exact-match score of each expert on each labelled row ({prompt, answer, [category]})."""
        experts = list(experts or [r.name for r in self.experts()])
        pairs = [(r, e) for r in rows for e in experts]
        plans, gens = {e: self.direct(e) for e in experts}, []
        for i in progress(range(0, len(pairs), batch_size), desc="scoring experts"):
            chunk = pairs[i : i + batch_size]
            gens += self.execute(
                [r["prompt"] for r, _ in chunk], [plans[e] for _, e in chunk], max_new_tokens=max_new_tokens
            )
        norm = lambda s: " ".join(str(s).split())
        return [
            {
                "prompt": r["prompt"],
                "expert": e,
                "category": r.get("category"),
                "score": float(norm(g.text) == norm(r["answer"])),
            }
            for (r, e), g in zip(pairs, gens)
        ]

    def fit(self, name: str, **options: Any) -> dict:
        """Fit a router over all experts (coe, bench_coe), or backfill a per-expert artifact."""
        if named(name) is not None:
            summary = backfill(self.ctx, name, options.pop("experts", None), **options)
            self.ctx.invalidate()
            self.sync()
            return summary
        fit = method(name).fit
        if fit is not None and "experts" in options:
            raise RouterError(
                f"{name} is fitted over all experts: experts= (--expert) applies to per-expert artifacts"
            )
        if fit is None:
            over_all = ", ".join(m.name for m in methods() if m.fit is not None)
            raise RouterError(
                f"router {name!r} has nothing to fit on demand ({over_all} are fitted over all experts; "
                "per-expert artifacts are fitted at registration, or backfilled by name: "
                f"{', '.join(a.name for a in artifacts())})"
            )
        return fit(self.ctx, **options)
