"""Per-token routing on a demo ocean: how often each token router puts the prompt's own expert
first, against chance and against an ideal post-hoc gate.

For held-in prompts (`--per-task` per skill), every (prompt token, module) decision of each
token router (PHATGOOSE, Arrow, SpectR, hidden; `Composer.inspect`'s `per_token.top1`, the
issue's metric); then the bound
a post-hoc gate could reach: each expert's gate = the centroid of the base's standardised
activations over its own registered examples, scored like PHATGOOSE (standardised dot
product); and how alike the fitted gates are: mean |cos| between experts' Arrow prototypes
and PHATGOOSE gates per module, and their |cos| with the mean token activation. Then
PHATGOOSE's gate product recomputed offline on the base's activations, and post-hoc fixes
of it (measured, not adopted): activations centred on the mean token of every expert's
registered examples, each expert's scores z-scored over those tokens, and (`--negatives
N`) gates refitted on each expert's examples plus N of the other experts'.
Target (issue 18): PHATGOOSE and Arrow >= 3x chance.

Where the decisions go: `own_plurality`, the share of prompts whose own expert is first on
more of their decisions than any other expert; `answer_top1` (`answer_x` its ratio to
chance), the own expert's share at the positions that write the gold answer, teacher-forced
and routed on the prompt alone (a token router's choice depends only on the tokens so far,
so these are the choices a right answer meets; PHATGOOSE's gates learn where an expert
lowers the loss, which is there). On one two-domain composition per ordered pair, the same
two shares per part: a position reads (prompt) or writes (answer) the first skill's part
before the `;`, the second's after it; for the token routers and GLIDER with and without its
global shortlist. `token_routing_by_domain.png` (beside the JSON; each router's row holds
its grids, `by_domain`) plots, per token router, prompt skill x expert ranked first, at the
prompt's tokens and at the positions writing the answer: routing that follows the domains
lights the diagonal; `token_routing_composition.png` draws the benchmark's first
composition, prompt and answer, token by token under PHATGOOSE and the GLIDER shortlist.
The helpers are in `bench/decisions.py`.

    python bench/token_routing.py --home ~/.composer [--per-task 8] [--negatives 64]
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from pathlib import Path

import torch
from common import args, demo_benchmark, demo_home, write
from decisions import by_domain, plot_by_domain, plot_composition, zones

ROUTERS = ("phatgoose", "arrow", "spectr", "hidden")
PART_ROUTERS = {  # label -> (router, config), on compositions
    **{r: (r, {}) for r in ROUTERS},
    "glider (alpha 3)": ("glider", {"alpha": 3.0}),
    "glider (alpha 3, global top 2)": ("glider", {"alpha": 3.0, "global_top": 2}),
}


def first_prompts(home, per_task: int, phrasing: str | None = None) -> list[dict]:
    """The first `per_task` held-in prompts of each task (or of `phrasing`'s, e.g. compositions)."""
    rows = demo_benchmark(home)
    by = defaultdict(list)
    for r in rows:
        wanted = r["phrasing"] == phrasing if phrasing else r["split"] == "held-in"
        if wanted and len(by[r["task"]]) < per_task:
            by[r["task"]].append(r)
    return [r for rs in by.values() for r in rs]


def standardise(x: torch.Tensor) -> torch.Tensor:
    return (x - x.mean(-1, keepdim=True)) / (x.std(-1, keepdim=True) + 1e-6)


class Activations:
    """The base model's input to every projection module, for one text at a time."""

    def __init__(self, base_path):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model = AutoModelForCausalLM.from_pretrained(base_path)
        self.tok = AutoTokenizer.from_pretrained(base_path)
        self.cur: dict[str, torch.Tensor] = {}
        for n, m in self.model.named_modules():
            if n.endswith("_proj"):
                m.register_forward_pre_hook(lambda mod, inp, n=n: self.cur.__setitem__(n, inp[0][0].float()))

    @torch.no_grad()
    def __call__(self, prompt: str, completion: str = "") -> dict[str, torch.Tensor]:
        text = f"{self.tok.bos_token}{prompt}\n{completion}"
        self.model(**self.tok(text, return_tensors="pt", add_special_tokens=False))
        return dict(self.cur)


def centroid_bound(acts: Activations, experts, rows) -> float:
    sums: dict[str, dict[str, torch.Tensor]] = defaultdict(dict)
    for e in experts:
        n = 0
        for ex in e.examples[:48]:
            for k, v in acts(ex["prompt"], ex.get("completion") or "").items():
                sums[k][e.name] = sums[k].get(e.name, 0) + standardise(v).sum(0)
            n += len(v)
        for per_expert in sums.values():
            per_expert[e.name] = standardise(per_expert[e.name] / n)
    names = [e.name for e in experts]
    hit = total = 0
    for r in rows:
        for k, x in acts(r["prompt"]).items():
            best = (standardise(x) @ torch.stack([sums[k][n] for n in names]).T).argmax(-1)
            hit += int((best == names.index(r["task"])).sum())
            total += len(best)
    return hit / total


def similarity(registry, acts: Activations, experts, rows) -> dict[str, float]:
    from registry.lora import read_lora
    from routers.arrow.fit import fit_prototypes

    means = defaultdict(list)
    for r in rows:
        for k, v in acts(r["prompt"]).items():
            means[k].append(v)
    protos = {e.name: fit_prototypes(read_lora(e.path)) for e in experts}
    gates = _gates(registry, experts, 0)
    cos = lambda a, b: float(abs(a @ b) / (a.norm() * b.norm()))
    stats = defaultdict(list)
    for k, xs in means.items():
        m = torch.cat(xs).mean(0)
        for what, vecs in (("arrow", protos), ("phatgoose", gates)):
            per = {e: standardise(v[p].float()) for e, v in vecs.items() for p in v if p.endswith(k)}
            stats[f"{what}_cos_between_experts"] += [
                cos(per[a], per[b]) for a, b in itertools.combinations(per, 2)
            ]
            stats[f"{what}_cos_with_mean_token"] += [cos(v, standardise(m)) for v in per.values()]
    return {k: round(sum(v) / len(v), 3) for k, v in stats.items()}


def _gates(registry, experts, negatives: int) -> dict[str, dict[str, torch.Tensor]]:
    """Each expert's registered PHATGOOSE gates, or (negatives > 0) gates refitted on its 64
    registered examples plus `negatives` drawn from the other experts' (seed 0)."""
    import random

    from registry.lora import read_lora
    from routers.phatgoose.config import GateFitConfig
    from routers.phatgoose.fit import fit_gates
    from routers.token import vectors_from_bytes

    if not negatives:
        out = {}
        for e in experts:
            key = next(a.key for a in registry.artifacts(e.name) if a.router == "phatgoose")
            out[e.name] = vectors_from_bytes(registry.get_artifact(e.name, "phatgoose", key)[1])
        return out
    from composer.host import Host

    host = Host.load(registry.list(kind="base")[0].path)
    host.model.requires_grad_(False)
    rng, out = random.Random(0), {}
    for e in experts:
        others = [ex for o in experts if o.name != e.name for ex in o.examples[:64]]
        examples = list(e.examples[:64]) + rng.sample(others, negatives)
        out[e.name] = fit_gates(host, read_lora(e.path), examples, GateFitConfig(max_examples=10_000))[0]
    return out


def offline_variants(registry, acts: Activations, experts, rows, negatives: int) -> list[dict]:
    """Own-expert top-1 share of PHATGOOSE's product LN(x)·LN(v) on the base's activations,
    plain (also per kind of module) and with the post-hoc fixes (see the module docstring),
    over the modules that every expert adapts."""
    names = [e.name for e in experts]
    gate_sets = {"": _gates(registry, experts, 0)}
    if negatives:
        gate_sets[f", gates refitted with {negatives} negatives"] = _gates(registry, experts, negatives)
    ref = defaultdict(list)
    for e in experts:
        for ex in e.examples[:48]:
            for k, v in acts(ex["prompt"], ex.get("completion") or "").items():
                ref[k].append(standardise(v))
    ref = {k: torch.cat(v) for k, v in ref.items()}
    hits, total, per_kind = defaultdict(int), 0, defaultdict(int)
    for r in rows:
        for k, x in acts(r["prompt"]).items():
            for refit, gates in gate_sets.items():
                vs = [next((v for p, v in gates[n].items() if p.endswith(k)), None) for n in names]
                if any(v is None for v in vs):  # modules every expert adapts only: one candidate set
                    break
                V = standardise(torch.stack(vs).float())
                ref_scores = ref[k] @ V.T
                scores = {
                    "plain": standardise(x) @ V.T,
                    "centred on the mean token": (standardise(x) - ref[k].mean(0)) @ V.T,
                    "z-scored per expert": (standardise(x) @ V.T - ref_scores.mean(0)) / ref_scores.std(0),
                }
                for what, sc in scores.items():
                    hits[what + refit] += int((sc.argmax(-1) == names.index(r["task"])).sum())
                if not refit:  # the plain gates per kind of module (q_proj, v_proj, ...)
                    label = f"plain, {k.rsplit('.', 1)[-1]} only"
                    hits[label] += int((scores["plain"].argmax(-1) == names.index(r["task"])).sum())
                    per_kind[label] += len(x)
            else:
                total += len(x)
    if not total:
        return []
    return [
        {"router": f"phatgoose offline, {what}", "own_top1": round(h / per_kind.get(what, total), 4)}
        for what, h in hits.items()
    ]


def main() -> None:
    a = args(
        __doc__.splitlines()[0],
        home={"default": None},
        per_task={"type": int, "default": 8},
        negatives={"type": int, "default": 0},
    )
    from composer import Composer
    from registry import Registry

    home = demo_home(a.home)
    registry = Registry(home=home)
    rows = first_prompts(home, 2 if a.smoke else a.per_task)
    c = Composer(registry)
    chance = 1 / len(c.ctx.adapter_names)
    acts = Activations(registry.list(kind="base")[0].path)
    names = sorted(c.ctx.adapter_names)
    results, grids = [], {}
    for router in ROUTERS:
        reports = c.inspect([r["prompt"] for r in rows], router)
        own = sum(rep["per_token"]["top1"].get(r["task"], 0.0) for rep, r in zip(reports, rows)) / len(rows)
        top = [max(rep["per_token"]["top1"].items(), key=lambda kv: kv[1])[0] for rep in reports]
        share, at_answer = zones(c, acts.tok, rows, router, {})
        grids[router] = {
            "prompt tokens": by_domain([rep["per_token"]["top1"] for rep in reports], rows, names),
            "writing the answer": by_domain(at_answer, rows, names),
        }
        results.append(
            {
                "router": router,
                "own_top1": round(own, 4),
                "x_chance": round(own / chance, 2),
                "own_plurality": round(sum(t == r["task"] for t, r in zip(top, rows)) / len(rows), 4),
                "answer_top1": round(share[True], 4),
                "answer_x": round(share[True] / chance, 2),
                "by_domain": grids[router],
            }
        )
    # one composition per ordered pair of domains, of the two-part kind (`a ; b`; the symbols
    # ocean's compositions chain two skills on one payload instead, and are left out)
    compositions = [
        r for r in first_prompts(home, 1, phrasing="composition") if ";" in r["prompt"] and ";" in r["answer"]
    ]
    for label, (router, config) in PART_ROUTERS.items() if compositions else ():
        share, _ = zones(c, acts.tok, compositions, router, config)
        results.append(
            {
                "router": f"{label}, each part of compositions",
                "own_top1": round(share[False], 4),
                "x_chance": round(share[False] / chance, 2),
                "answer_top1": round(share[True], 4),
                "answer_x": round(share[True] / chance, 2),
            }
        )
    smoke = "-smoke" if a.smoke else ""
    plot_by_domain(grids, Path(a.out) / f"token_routing_by_domain{smoke}.png")
    if compositions:
        shown = {k: PART_ROUTERS[k] for k in ("phatgoose", "glider (alpha 3, global top 2)")}
        plot_composition(
            c, acts.tok, compositions[0], shown, Path(a.out) / f"token_routing_composition{smoke}.png"
        )
    experts = registry.list(kind="lora")
    bound = centroid_bound(acts, experts, rows)
    results.append(
        {"router": "ideal centroid gate", "own_top1": round(bound, 4), "x_chance": round(bound / chance, 2)}
    )
    for r in offline_variants(registry, acts, experts, rows, a.negatives):
        results.append({**r, "x_chance": round(r["own_top1"] / chance, 2)})
    targets = {
        f"{r['router']} >= 3x chance": r["x_chance"] >= 3
        for r in results
        if r["router"] in ("phatgoose", "arrow")
    }
    targets["similarity"] = similarity(registry, acts, experts, rows)  # context, not a target
    write(
        "token_routing",
        a,
        results,
        targets,
        ["router", "own_top1", "x_chance", "own_plurality", "answer_top1", "answer_x"],
    )


if __name__ == "__main__":
    main()
