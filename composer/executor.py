"""Plans -> work: which engine runs each routing plan, and running it in-process.

Contract:
- `placement(plan, models, endpoints=())`: where a plan runs — `("model", name)` when it
  selects a whole-model expert (`models`: their names), `("endpoint", name)` when it
  selects an endpoint expert, else `("host", None)`: the mixture-of-LoRA
  host of the base runs select, merge, ensemble, token-gated and base rows together.
  `group(plans, models, endpoints=())` -> {placement: [indices]} and `scatter(n, groups, results)` put
  per-group results back in request order. The in-process `Executor` and the Ray backend
  both split work with these, so the split is written once.
- `host_row(plan)`: what the host runs for one non-ensemble plan: a mixture
  `{expert: weight}` (empty = base), or a `Gate` carrying its registered kind's score.
- `Executor(adapters, models, model_names, endpoints=None, prices=None)`:
  `execute(prompts, plans, **settings)` -> one `Completion` per prompt: host plans as ONE
  heterogeneous batch (an ensemble adds one row per candidate; the best mean
  log-likelihood wins), whole-model plans on their model (`ModelPool`), endpoint plans
  forwarded (`composer.endpoints.EndpointPool`). An endpoint that fails (down, past its
  timeout, 5xx, or still cooling down from a failure) hands the row to the plan's next-best
  expert by the router's scores (the plan's `fallback` says which endpoint failed and why);
  with none left (or a request that named the endpoint) the row is `ExpertUnavailable` (503).
  `prices(name)` -> (input, output) price per 1M tokens or None: each `Completion` carries
  its `cost` (None when no expert it used has a price). `settings` are
  `Host.generate`'s (max_new_tokens, temperature, top_p, chat, seed, fit_context).
  `stream(prompt, plan, **settings)` yields text deltas, then the `Completion` (an
  ensemble's answer comes as one delta). `choose(prompts, plans, choices)` -> per prompt
  the log-likelihood of each choice (multiple choice). `trace(prompt, plan)` -> which
  experts every module chose for every prompt token (token-level plans).
- Residency: host plans run through `resident_groups` — with an adapter budget a token plan
  whose candidates do not fit keeps the ones its gates use most on its own prompt, rows are
  grouped so each group's experts fit, and each group is made resident before it runs; a
  row's output never depends on the other rows or on what happened to be resident.
- Quarantine: host plans first pass `servable(plans)` (a token plan drops quarantined
  candidates; a plan naming an expert the host does not serve is an `ExpertUnavailable`);
  a generation that fails inside a layer, or turns NaN/Inf, has its experts probed one by one
  (`AdapterManager.isolate`): the failing ones are quarantined and the request is an
  `ExpertUnavailable`, so a retry is routed elsewhere and other requests keep being served.
- `execute_each(execute, prompts, plans, settings)`: run rows of several requests as one
  batch; if the batch fails, rerun it row by row, so a bad row fails only itself — a list
  of `Completion` or the row's exception.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from composer.completion import Completion
from composer.endpoints import EndpointPool
from composer.endpoints.runner import EndpointRunner
from composer.errors import ComposerError, ExpertUnavailable, NonFiniteOutput
from composer.host import Gate, Host, RoutingTrace
from composer.host.layer import LayerError
from composer.host.stream import stream as stream_generation
from composer.introspect import token_report
from composer.models import ModelPool
from routers import RoutingPlan
from routers.cost import plan_cost
from routers.token import gate_kinds

Placement = tuple[str, str | None]  # ("host", None) | ("model", name) | ("endpoint", name)
HOST: Placement = ("host", None)


def placement(plan: RoutingPlan, models: set[str], endpoints=frozenset()) -> Placement:
    selected = plan.selected()
    if selected in endpoints:
        return ("endpoint", selected)
    return ("model", selected) if selected in models else HOST


def group(
    plans: Sequence[RoutingPlan], models: set[str], endpoints=frozenset()
) -> dict[Placement, list[int]]:
    out: dict[Placement, list[int]] = {}
    for i, plan in enumerate(plans):
        out.setdefault(placement(plan, models, endpoints), []).append(i)
    return out


def scatter(n: int, groups: dict[Placement, list[int]], results: dict[Placement, Sequence]) -> list:
    out: list = [None] * n
    for where, idx in groups.items():
        for i, r in zip(idx, results[where], strict=True):
            out[i] = r
    return out


def host_row(plan: RoutingPlan):
    if plan.mode != "token":
        return plan.mixture()
    g = plan.gate
    return Gate(
        g.kind,
        gate_kinds()[g.kind].score,
        top_k=g.top_k,
        temperature=g.temperature,
        top_p=g.top_p,
        bias=g.bias,
        experts=plan.experts,
    )


def execute_each(
    execute: Callable[..., list], prompts: Sequence, plans: Sequence[RoutingPlan], settings: dict
) -> list:
    try:
        return list(execute(prompts, plans, **settings))
    except Exception:  # noqa: BLE001 - one row's bad prompt must not fail the others: row by row
        out = []
        for p, plan in zip(prompts, plans):
            try:
                out += execute([p], [plan], **settings)
            except Exception as e:  # noqa: BLE001 - handed to this row's caller
                out.append(e)
        return out


class Executor:
    def __init__(
        self,
        adapters,
        models: ModelPool,
        model_names: Callable[[], set[str]],
        endpoints: EndpointPool | None = None,
        prices: Callable[[str], tuple[float, float] | None] | None = None,
    ):
        self.adapters, self.models, self.model_names = adapters, models, model_names
        self.endpoints, self.prices = endpoints, prices or (lambda name: None)
        self.remote = (
            None
            if endpoints is None
            else EndpointRunner(endpoints, self._live, lambda p, plan, st: self.execute([p], [plan], **st)[0])
        )

    def _live(self) -> set[str]:
        return {r.name for r in self.adapters.servable()} | self.model_names() | self.endpoint_names()

    def _engine(self, where: Placement) -> Host:
        return self.adapters.host if where == HOST else self.models.get(where[1])

    def endpoint_names(self) -> set[str]:
        return self.endpoints.names() if self.endpoints is not None else set()

    def execute(self, prompts: Sequence, plans: Sequence[RoutingPlan], **settings: Any) -> list[Completion]:
        if len(prompts) != len(plans):
            raise ValueError(f"{len(plans)} plans for {len(prompts)} prompts")
        groups = group(plans, self.model_names(), self.endpoint_names())
        results = {}
        for where, idx in groups.items():
            ps, pl = [prompts[i] for i in idx], [plans[i] for i in idx]
            if where == HOST:
                results[where] = self._on_host(ps, pl, settings)
            elif where[0] == "endpoint":
                results[where] = self.remote.run(where[1], ps, pl, settings)
            else:
                results[where] = [
                    Completion.of(g, plan, where[1])
                    for g, plan in zip(self._engine(where).generate(ps, **settings), pl)
                ]
        return [self.priced(c) for c in scatter(len(plans), groups, results)]

    def priced(self, c: Completion) -> Completion:
        """`c` with its cost (`routers.cost.plan_cost` at the experts' prices)."""
        c.cost = plan_cost(self.prices, c.plan, c.expert, c.prompt_tokens, c.completion_tokens)
        return c

    def servable(self, plans: Sequence[RoutingPlan]) -> list[RoutingPlan]:
        """Host plans as the host can run them now: a token plan loses quarantined candidates; a
        plan that names an expert the host does not serve (quarantined, removed) is refused."""
        live = {r.name for r in self.adapters.servable()}
        out = []
        for plan in plans:
            gone = [e for e in plan.experts if e not in live]
            if gone and plan.mode == "token":
                plan = plan.model_copy(update={"experts": [e for e in plan.experts if e in live]})
            elif gone:
                why = {n: r for (n, _), r in self.adapters.quarantined().items() if n in gone}
                raise ExpertUnavailable(
                    "; ".join(
                        f"expert {e!r} is quarantined: {why[e]}"
                        if e in why
                        else f"expert {e!r} is not served by this host (removed?)"
                        for e in gone
                    )
                )
            out.append(plan)
        return out

    def _generate(
        self,
        prompts: Sequence,
        rows: Sequence,
        plans: Sequence[RoutingPlan],
        settings: dict,
        retried: bool = False,
    ):
        """The host's generation; a failure inside a layer is pinned on the experts that cause it.
        A failure none of these plans' experts causes came from another request's row in the
        same decoding step (continuous batching): the rows are run once more."""
        try:
            return self.adapters.host.generate(prompts, rows, **settings)
        except (LayerError, NonFiniteOutput) as e:
            broken = self.adapters.isolate(x for p in plans for x in p.experts)
            if broken:
                raise ExpertUnavailable(
                    f"expert(s) {', '.join(broken)} failed on this host and are quarantined ({e}); "
                    "retry: routing no longer picks them"
                ) from e
            if retried or not isinstance(e, LayerError):
                raise
            return self._generate(prompts, rows, plans, settings, retried=True)

    def resident_groups(self, prompts: Sequence, plans: Sequence[RoutingPlan], chat: bool = True) -> list:
        """Host plans made to fit the adapter budget: a token plan whose candidates do not fit
        keeps the ones its gates use most on its own prompt (`GateBank.preselect`); rows are
        grouped in order so that each group's experts fit at once. Returns [(row indices, their
        plans)]; run each under `adapters.holding(experts)`. No budget: one group."""
        plans = self.servable(plans)
        if not self.adapters.limited:
            return [(list(range(len(plans))), plans)]
        plans = [self._narrow(prompt, plan, chat) for prompt, plan in zip(prompts, plans)]
        records = {r.name: r for r in self.adapters.servable()}
        groups: list[list[int]] = []
        union: set[str] = set()
        for i, plan in enumerate(plans):
            need = union | set(plan.experts)
            if groups and self.adapters.fits(records[e] for e in need if e in records):
                groups[-1].append(i)
                union = need
            else:
                groups.append([i])
                union = set(plan.experts)
        return [(idx, [plans[i] for i in idx]) for idx in groups]

    def _narrow(self, prompt, plan: RoutingPlan, chat: bool) -> RoutingPlan:
        if plan.mode != "token":
            return plan
        records = {r.name: r for r in self.adapters.servable()}
        cands = [records[e] for e in plan.experts if e in records]
        if self.adapters.fits(cands):
            return plan
        ranked = self.adapters.bank.preselect(self.adapters.host, prompt, plan, len(cands), cands, chat)
        kept: list[str] = []
        for name in ranked:  # the most used candidates, as many as fit
            if not self.adapters.fits(records[e] for e in [*kept, name]):
                break
            kept.append(name)
        note = (
            f"; {len(kept)} of {len(cands)} candidates kept (the adapter budget), by gate mass on the prompt"
        )
        return plan.model_copy(update={"experts": kept, "explanation": plan.explanation + note})

    def _on_host(self, prompts: Sequence, plans: Sequence[RoutingPlan], settings: dict) -> list[Completion]:
        out: list = [None] * len(plans)
        for idx, group_plans in self.resident_groups(prompts, plans, settings.get("chat", True)):
            with self.adapters.holding(e for p in group_plans for e in p.experts):
                done = self._run_rows([prompts[i] for i in idx], group_plans, settings)
            for i, c in zip(idx, done):
                out[i] = c
        return out

    def _run_rows(self, prompts: Sequence, plans: Sequence[RoutingPlan], settings: dict) -> list[Completion]:
        rows, owner = [], []  # one host row per (query, candidate expert)
        for i, plan in enumerate(plans):
            if plan.mode == "ensemble":
                rows += [{e: 1.0} for e in plan.experts]
                owner += [(i, e) for e in plan.experts]
            else:
                rows.append(host_row(plan))
                owner.append((i, plan.selected()))
        gens = self._generate([prompts[i] for i, _ in owner], rows, plans, settings)
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
                plan = plan.model_copy(
                    update={
                        "explanation": plan.explanation + f"; kept {e}'s answer "
                        f"(mean log-likelihood {g.logprob:.3f})"
                    }
                )
            out.append(Completion.of(g, plan, e, cands.get(i)))
        return out

    def stream(self, prompt, plan: RoutingPlan, **settings: Any) -> Iterator[str | Completion]:
        if plan.mode == "ensemble":  # every candidate must finish before one is kept
            (c,) = self.execute([prompt], [plan], **settings)  # priced there
            if c.text:
                yield c.text
            yield c
            return
        where = placement(plan, self.model_names(), self.endpoint_names())
        if where[0] == "endpoint":
            for item in self.remote.stream(where[1], prompt, plan, settings):
                yield item if isinstance(item, str) else self.priced(item)
            return
        if where != HOST:
            for item in stream_generation(self._engine(where), prompt, {}, **settings):
                yield (
                    item if isinstance(item, str) else self.priced(Completion.of(item, plan, plan.selected()))
                )
            return
        ((_, (plan,)),) = self.resident_groups([prompt], [plan], settings.get("chat", True))
        with self.adapters.holding(plan.experts) as host:  # leased until the stream ends or is dropped
            for item in stream_generation(host, prompt, host_row(plan), **settings):
                yield (
                    item if isinstance(item, str) else self.priced(Completion.of(item, plan, plan.selected()))
                )

    def choose(
        self,
        prompts: Sequence,
        plans: Sequence[RoutingPlan],
        choices: Sequence[Sequence[str]],
        chat: bool = True,
        batch_size: int = 64,
    ) -> list[list[float]]:
        """Per prompt, the log-likelihood of each choice under its plan; an ensemble scores each
        choice with every candidate and keeps the best."""
        scores = [[-float("inf")] * len(c) for c in choices]
        for where, idx in group(plans, self.model_names(), self.endpoint_names()).items():
            if where[0] == "endpoint":
                raise ComposerError(
                    f"endpoint expert {where[1]} cannot score choices (log-likelihood): "
                    "endpoint experts answer generation tasks"
                )
            if where != HOST:
                self._score(
                    self._engine(where), idx, [{}] * len(idx), prompts, choices, scores, chat, batch_size
                )
                continue
            for sub, sub_plans in self.resident_groups(
                [prompts[i] for i in idx], [plans[i] for i in idx], chat
            ):
                rows = [
                    [{e: 1.0} for e in p.experts] if p.mode == "ensemble" else [host_row(p)]
                    for p in sub_plans
                ]
                self._score(
                    self.adapters.host,
                    [idx[k] for k in sub],
                    rows,
                    prompts,
                    choices,
                    scores,
                    chat,
                    batch_size,
                )
        return scores

    @staticmethod
    def _score(engine: Host, idx, rows, prompts, choices, scores, chat: bool, batch_size: int) -> None:
        """Each choice of each prompt in `idx` scored under each of its rows; keep the best."""
        jobs = [
            (i, j, row)
            for i, rs in zip(idx, rows)
            for j in range(len(choices[i]))
            for row in (rs if isinstance(rs, list) else [rs])
        ]
        for k in range(0, len(jobs), batch_size):
            chunk = jobs[k : k + batch_size]
            lls = engine.loglik(
                [prompts[i] for i, _, _ in chunk],
                [choices[i][j] for i, j, _ in chunk],
                [row for *_, row in chunk],
                chat=chat,
            )
            for (i, j, _), ll in zip(chunk, lls):
                scores[i][j] = max(scores[i][j], ll)

    def trace(self, prompt, plan: RoutingPlan, chat: bool = True) -> dict | None:
        """For a token-level plan, which experts every module chose for every prompt token."""
        if plan.mode != "token":
            return None
        ((_, (plan,)),) = self.resident_groups([prompt], [plan], chat)
        trace = RoutingTrace()
        with self.adapters.holding(plan.experts) as host:
            ids = host.encode([prompt], chat)["input_ids"]
            host.logits(ids, mixtures=[host_row(plan)], trace=trace)
        names = {s: n for n, s in host.slots.items()}
        return token_report(trace, [host.tokenizer.decode([i]) for i in ids[0].tolist()], names)
