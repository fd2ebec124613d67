"""The Python API: route and generate over every expert of one base model, in-process.

Contract: `Composer(registry=None, base=None, default_router=None, encoder=None, writer=None)`
- `base` defaults to the only registered base model (an error lists them if several).
  `default_router` defaults to $COMPOSER_DEFAULT_ROUTER, else "retrieval". `writer` is
  GLIDER's instruction writer (an object or a spec, see `routers.glider.writers`; default
  $COMPOSER_INSTRUCTION_WRITER, else none).
- `route(prompts, router=None, **config)` -> one `RoutingPlan` per prompt. A prompt is a
  string, or a dict/`Query` with `task`/`category` (needed by the oracle).
- `generate(prompts, router=None, expert=None, max_new_tokens=32, ...)` -> one
  `Completion` per prompt: `route` (or, with `expert=`, no routing: an expert name, or the
  base model's name for no adapter), then `execute(prompts, plans, ...)`. Execution sends
  all host plans through the host as ONE heterogeneous batch: selected, merged, ensembled
  (k rows, best mean log-likelihood wins), token-gated (PHATGOOSE, Arrow, GLIDER) and base
  rows mixed; plans selecting a whole-model expert run on that model (`ModelPool`, LRU,
  at most `max_models` resident). Execution prompts may be chat message lists.
  `stream(prompt, plan, ...)` yields one prompt's text deltas, then its `Completion`.
- Experts: `adapters()` are the LoRA experts of this base the host serves; `experts()`
  adds the whole-model experts (`kind=model`), which query-level routers may select.
- `inspect(prompts, router=None, **config)` -> per prompt: the plan and, for token-level
  plans, which experts every module chose for every prompt token (`composer.introspect`).
- `register(path, name, fit_options=None, ...)` registers a LoRA expert with its post-hoc
  artifacts (`routers.posthoc`: embeddings, PHATGOOSE gates, Arrow prototypes, GLIDER task
  embedding) committed atomically, then loads it into the running host; a `kind="model"`
  expert gets its embeddings only; `remove` drops either. The host follows the registry
  (`sync()`), so experts registered by another process are served too.
  `fit("coe" | "bench_coe", ...)` fits the all-expert routers; `score_experts(rows)`
  evaluates experts on labelled prompts (Bench-CoE's input).
Bad router names/configs raise `RouterError`; unknown experts `ComposerError`.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from composer.errors import ComposerError
from composer.host import Gate, Generation, Host, RoutingTrace
from composer.host.stream import stream as stream_generation
from composer.introspect import token_report
from composer.models import ModelPool
from composer.progress import progress, set_quiet
from composer.settings import Settings
from registry import Registry
from registry.records import ExpertRecord
from routers import Query, RouterContext, RouterError, RoutingPlan, build
from routers.glider.writers import writer_from_spec
from routers.posthoc import fit_expert, run
from routers.token import expert_vectors

log = logging.getLogger(__name__)
__all__ = ["Completion", "Composer", "ComposerError", "as_queries"]


@dataclass
class Completion:
    text: str
    plan: RoutingPlan
    expert: str | None  # the expert whose output this is (ensemble winner); None for base/merge
    logprob: float
    token_ids: list[int] = field(default_factory=list)
    finish_reason: str = "stop"
    candidates: dict[str, float] = field(default_factory=dict)  # ensemble: expert -> mean log-lik
    prompt_tokens: int = 0

    def to_dict(self) -> dict:
        return {"text": self.text, "expert": self.expert, "logprob": self.logprob,
                "finish_reason": self.finish_reason, "candidates": self.candidates,
                "prompt_tokens": self.prompt_tokens, "completion_tokens": len(self.token_ids),
                "routing": self.plan.model_dump()}

    @classmethod
    def of(cls, g: Generation, plan: RoutingPlan, expert: str | None, candidates=None) -> Completion:
        return cls(g.text, plan, expert, g.logprob, g.token_ids, g.finish_reason, candidates or {}, g.prompt_tokens)


def as_queries(prompts: str | Sequence[str | dict | Query]) -> list[Query]:
    if isinstance(prompts, str):
        prompts = [prompts]
    return [p if isinstance(p, Query) else Query(prompt=p) if isinstance(p, str) else Query(**p) for p in prompts]


class Composer:
    def __init__(self, registry: Registry | None = None, base: str | None = None,
                 default_router: str | None = None, encoder=None, writer=None, max_models: int | None = None,
                 settings: Settings | None = None):
        if settings is None:  # the Python API's entry point: the environment's settings
            settings = Settings.from_env()
            set_quiet(settings.quiet)
        self.settings = settings
        self.registry = registry or settings.registry()
        self.base = base or settings.base or self._only_base()
        self.registry.get(self.base)  # NotFoundError for an unknown base
        self.default_router = default_router or settings.default_router
        if writer is None or isinstance(writer, str):
            writer = writer_from_spec(writer or settings.instruction_writer, self.registry,
                                      settings.instruction_writer_key)
        self.ctx = RouterContext(self.registry, self.base, encoder, experts=self.experts, writer=writer)
        self._host: Host | None = None
        self.models = ModelPool(self.registry, max_models or settings.max_models)
        self._loaded: dict[str, str] = {}  # name -> digest of the version the host holds
        self._broken: dict[tuple[str, int], str] = {}  # experts the host could not load, and why
        self._lock = threading.RLock()

    def _only_base(self) -> str:
        bases = [r.name for r in self.registry.list(kind="base")]
        if len(bases) != 1:
            raise ComposerError("no base model is registered" if not bases else
                                f"several base models are registered ({', '.join(bases)}): pass base=")
        return bases[0]

    # -- experts and the host -------------------------------------------------------------
    def adapters(self) -> list[ExpertRecord]:
        """Ready LoRA experts of this base that the host can serve."""
        return [r for r in self.registry.list(kind="lora", base=self.base)
                if (r.name, r.version) not in self._broken]

    def experts(self) -> list[ExpertRecord]:
        """Everything routing may pick: the adapters, then the ready whole-model experts."""
        return self.adapters() + self.registry.list(kind="model")

    @property
    def host(self) -> Host:
        with self._lock:
            if self._host is None:
                self._host = Host.load(self.registry.get(self.base).path, name=self.base)
            self.sync()
            return self._host

    def sync(self) -> None:
        """Make the host hold exactly the registry's experts (new, removed, new versions)."""
        with self._lock:
            host = self._host
            if host is None:
                return
            want = {r.name: r for r in self.adapters()}
            stale = [n for n, digest in self._loaded.items() if n not in want or want[n].digest != digest]
            for name in stale:
                host.remove_adapter(name)
                del self._loaded[name]
            new = [rec for name, rec in want.items() if name not in self._loaded]
            for rec in new:
                try:
                    host.add_adapter(rec.name, rec.path)
                except (ValueError, OSError) as e:
                    log.warning("expert %s v%d cannot be served: %s", rec.name, rec.version, e)
                    self._broken[(rec.name, rec.version)] = str(e)
                    continue
                self._loaded[rec.name] = rec.digest
                try:
                    for kind, vectors in expert_vectors(self.ctx, rec).items():
                        host.set_vectors(rec.name, kind, vectors)
                except (ValueError, OSError, RouterError) as e:
                    log.warning("expert %s v%d has no usable token gates (token-level routers skip it): %s",
                                rec.name, rec.version, e)
            if stale or new:
                self.ctx.invalidate()

    def resident(self) -> list[str]:
        """Adapters the host holds now (none before the host is first used)."""
        return list(self._loaded)

    def register(self, path, name: str, fit_options: dict[str, dict] | None = None, **kw: Any) -> ExpertRecord:
        """Register a LoRA expert of this base (or, kind="model", a whole-model expert) with its
        post-hoc artifacts; it is routable at once."""
        kw.setdefault("kind", "lora")
        if kw["kind"] == "lora":
            kw.setdefault("base", self.base)
            kw["fit"] = lambda staged, draft: fit_expert(self.ctx, draft, staged, fit_options)
        elif kw["kind"] == "model":  # routable by query-level routers: embeddings only
            if fit_options:
                raise ComposerError("fit options apply to LoRA experts only")
            kw["fit"] = lambda staged, draft: run("embeddings", self.ctx, draft, staged)
        rec = self.registry.register(path, name, **kw)
        self.sync()
        return rec

    def remove(self, name: str, version: int | None = None) -> ExpertRecord:
        rec = self.registry.remove(name, version)
        self.models.drop(name)
        self.sync()
        return rec

    # -- routing ----------------------------------------------------------------------------
    def router(self, name: str | None = None, **config: Any):
        return build(name or self.default_router, self.ctx, **config)

    def route(self, prompts, router: str | None = None, **config: Any) -> list[RoutingPlan]:
        queries = as_queries(prompts)
        return self.router(router, **config).route(queries) if queries else []

    def direct(self, expert: str) -> RoutingPlan:
        """The plan for a request that names an expert (or the base model): no routing."""
        if expert == self.base:
            return RoutingPlan.direct(expert, base=True)
        names = {r.name for r in self.experts()}
        if expert not in names:
            raise ComposerError(f"unknown expert {expert!r} for base {self.base!r}; "
                                f"known: {', '.join(sorted(names)) or '(none)'}")
        return RoutingPlan.direct(expert)

    def generate(self, prompts, router: str | None = None, expert: str | None = None,
                 max_new_tokens: int = 32, temperature: float = 0.0, top_p: float = 1.0, chat: bool = True,
                 seed: int | None = None, **config: Any) -> list[Completion]:
        queries = as_queries(prompts)
        if expert is not None and (router is not None or config):
            raise ComposerError("give either expert= (no routing) or a router, not both")
        self.sync()
        plans = [self.direct(expert)] * len(queries) if expert else self.route(queries, router, **config)
        return self.execute([q.prompt for q in queries], plans, max_new_tokens=max_new_tokens,
                            temperature=temperature, top_p=top_p, chat=chat, seed=seed)

    def execute(self, prompts: Sequence, plans: Sequence[RoutingPlan], **settings: Any) -> list[Completion]:
        """Run routed plans: host plans as one heterogeneous batch, whole-model plans per model.
        `settings`: max_new_tokens, temperature, top_p, chat, seed (as `Host.generate`)."""
        if len(prompts) != len(plans):
            raise ValueError(f"{len(plans)} plans for {len(prompts)} prompts")
        out: list[Completion | None] = [None] * len(plans)
        on_model: dict[str, list[int]] = {}
        models = {r.name for r in self.registry.list(kind="model")}
        for i, plan in enumerate(plans):
            if (m := self.model_of(plan, models)) is not None:
                on_model.setdefault(m, []).append(i)
        for name, idx in on_model.items():
            gens = self.models.get(name).generate([prompts[i] for i in idx], **settings)
            for i, g in zip(idx, gens):
                out[i] = Completion.of(g, plans[i], name)
        rest = [i for i in range(len(plans)) if out[i] is None]
        for i, c in zip(rest, self._on_host([prompts[i] for i in rest], [plans[i] for i in rest], settings)):
            out[i] = c
        return out

    def choose(self, prompts: Sequence, plans: Sequence[RoutingPlan], choices: Sequence[Sequence[str]],
               chat: bool = True, batch_size: int = 64) -> list[list[float]]:
        """Multiple choice: per prompt, the log-likelihood of each choice under its plan. An
        ensemble scores each choice with every candidate and keeps the best."""
        models = {r.name for r in self.registry.list(kind="model")}
        jobs: list[tuple[int, int, Host, Any]] = []  # (prompt, choice, host, row)
        for i, plan in enumerate(plans):
            model = self.model_of(plan, models)
            host = self.models.get(model) if model else self.host
            rows = [{e: 1.0} for e in plan.experts] if plan.mode == "ensemble" else [{} if model else self._row(plan)]
            jobs += [(i, j, host, row) for j in range(len(choices[i])) for row in rows]
        scores = [[-float("inf")] * len(c) for c in choices]
        for host in {id(h): h for _, _, h, _ in jobs}.values():
            mine = [job for job in jobs if job[2] is host]
            for k in range(0, len(mine), batch_size):
                chunk = mine[k:k + batch_size]
                lls = host.loglik([prompts[i] for i, *_ in chunk], [choices[i][j] for i, j, *_ in chunk],
                                  [row for *_, row in chunk], chat=chat)
                for (i, j, _, _), ll in zip(chunk, lls):
                    scores[i][j] = max(scores[i][j], ll)
        return scores

    def model_of(self, plan: RoutingPlan, models: set[str] | None = None) -> str | None:
        """The whole-model expert a plan selects, or None when the host serves it."""
        if models is None:
            models = {r.name for r in self.registry.list(kind="model")}
        return plan.selected() if plan.selected() in models else None

    def _on_host(self, prompts: Sequence, plans: Sequence[RoutingPlan], settings: dict) -> list[Completion]:
        if not plans:
            return []
        rows, owner = [], []  # one host row per (query, candidate expert)
        for i, plan in enumerate(plans):
            if plan.mode == "ensemble":
                rows += [{e: 1.0} for e in plan.experts]
                owner += [(i, e) for e in plan.experts]
            else:
                rows.append(self._row(plan))
                owner.append((i, plan.selected()))
        gens = self.host.generate([prompts[i] for i, _ in owner], rows, **settings)
        best: dict[int, tuple] = {}
        cands: dict[int, dict[str, float]] = {}
        for (i, e), g in zip(owner, gens):
            if plans[i].mode == "ensemble":
                cands.setdefault(i, {})[e] = round(g.logprob, 4)
            if i not in best or g.logprob > best[i][1].logprob:
                best[i] = (e, g)
        out = []
        for i, plan in enumerate(plans):
            e, g = best[i]
            if plan.mode == "ensemble":
                plan = plan.model_copy(update={"explanation": plan.explanation + f"; kept {e}'s answer "
                                               f"(mean log-likelihood {g.logprob:.3f})"})
            out.append(Completion.of(g, plan, e, cands.get(i)))
        return out

    def stream(self, prompt, plan: RoutingPlan, **settings: Any) -> Iterator[str | Completion]:
        """One prompt's completion as text deltas, then the `Completion`. Ensembles cannot
        stream (every candidate must finish first): their answer comes as one delta."""
        if plan.mode == "ensemble":
            c, = self.execute([prompt], [plan], **settings)
            if c.text:
                yield c.text
            yield c
            return
        model = self.model_of(plan)
        host = self.models.get(model) if model else self.host
        row = {} if model else self._row(plan)
        for item in stream_generation(host, prompt, row, **settings):
            yield item if isinstance(item, str) else Completion.of(item, plan, plan.selected())

    @staticmethod
    def _row(plan: RoutingPlan):
        """What the host runs for one (non-ensemble) plan: a mixture, or per-token gates."""
        if plan.mode != "token":
            return plan.mixture()
        g = plan.gate
        return Gate(g.kind, top_k=g.top_k, temperature=g.temperature, bias=g.bias, experts=plan.experts)

    def inspect(self, prompts, router: str | None = None, chat: bool = True, **config: Any) -> list[dict]:
        """Per prompt: the plan (as JSON) plus `per_token` — for token-level plans, which experts
        every module chose for every prompt token (`composer.introspect.token_report`), else None."""
        queries = as_queries(prompts)
        host = self.host
        out = []
        for q, plan in zip(queries, self.route(queries, router, **config)):
            report: dict[str, Any] = {**plan.model_dump(), "prompt": q.prompt, "per_token": None}
            if plan.mode == "token":
                trace = RoutingTrace()
                ids = host.encode([q.prompt], chat)["input_ids"]
                host.logits(ids, mixtures=[self._row(plan)], trace=trace)
                names = {s: n for n, s in host.slots.items()}
                tokens = [host.tokenizer.decode([i]) for i in ids[0].tolist()]
                report["per_token"] = token_report(trace, tokens, names)
            out.append(report)
        return out

    # -- fitting the all-expert routers ------------------------------------------------------
    def score_experts(self, rows: Sequence[dict], experts: Sequence[str] | None = None,
                      max_new_tokens: int = 32, batch_size: int = 256) -> list[dict]:
        """Exact-match score of each expert on each labelled row ({prompt, answer, [category]})."""
        experts = list(experts or [r.name for r in self.experts()])
        pairs = [(r, e) for r in rows for e in experts]
        plans, gens = {e: self.direct(e) for e in experts}, []
        for i in progress(range(0, len(pairs), batch_size), desc="scoring experts"):
            chunk = pairs[i:i + batch_size]
            gens += self.execute([r["prompt"] for r, _ in chunk], [plans[e] for _, e in chunk],
                                 max_new_tokens=max_new_tokens)
        norm = (lambda s: " ".join(str(s).split()))
        return [{"prompt": r["prompt"], "expert": e, "category": r.get("category"),
                 "score": float(norm(g.text) == norm(r["answer"]))} for (r, e), g in zip(pairs, gens)]

    def fit(self, router: str, **kw: Any) -> dict:
        """Fit a router trained over all experts: "coe" (rows/expert_map/results/by) or
        "bench_coe" (results, level; without results the experts are scored on each other's
        registered examples, `per_expert` prompts each)."""
        from routers.bench_coe import fit_bench_coe
        from routers.coe import fit_coe
        if router == "coe":
            return fit_coe(self.ctx, **kw)
        if router == "bench_coe":
            if kw.get("results") is None:
                n = kw.pop("per_expert", 16)
                labelled = [{"prompt": ex["prompt"], "answer": ex["completion"], "category": rec.name}
                            for rec in self.experts() for ex in rec.examples[:n] if ex.get("completion")]
                kw["results"] = self.score_experts(labelled)
            kw.pop("per_expert", None)
            return fit_bench_coe(self.ctx, **kw)
        raise RouterError(f"router {router!r} has nothing to fit on demand (coe and bench_coe do; "
                          "per-expert artifacts are fitted at registration)")
