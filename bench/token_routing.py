"""Per-token routing on a demo ocean: how often each token router puts the prompt's own expert
first, against chance and against an ideal post-hoc gate.

For held-in prompts (`--per-task` per skill), every (prompt token, module) decision of each
token router (`Composer.inspect`'s `per_token.top1`, the issue's metric); then the bound
a post-hoc gate could reach: each expert's gate = the centroid of the base's standardised
activations over its own registered examples, scored like PHATGOOSE (standardised dot
product); and how alike the fitted gates are: mean |cos| between experts' Arrow prototypes
and PHATGOOSE gates per module, and their |cos| with the mean token activation.
Target (issue 18): PHATGOOSE and Arrow >= 3x chance.

    python bench/token_routing.py --home ~/.composer [--per-task 8]   # e.g. a --ocean domains build
"""

from __future__ import annotations

import itertools
from collections import defaultdict

import torch
from common import args, demo_benchmark, demo_home, write

ROUTERS = ("phatgoose", "arrow", "spectr")


def held_in(home, per_task: int) -> list[dict]:
    rows = demo_benchmark(home)
    by = defaultdict(list)
    for r in rows:
        if r["split"] == "held-in" and len(by[r["task"]]) < per_task:
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
    from routers.token import vectors_from_bytes

    means = defaultdict(list)
    for r in rows:
        for k, v in acts(r["prompt"]).items():
            means[k].append(v)
    protos = {e.name: fit_prototypes(read_lora(e.path)) for e in experts}
    gates = {}
    for e in experts:
        key = next(a.key for a in registry.artifacts(e.name) if a.router == "phatgoose")
        gates[e.name] = vectors_from_bytes(registry.get_artifact(e.name, "phatgoose", key)[1])
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


def main() -> None:
    a = args(__doc__.splitlines()[0], home={"default": None}, per_task={"type": int, "default": 8})
    from composer import Composer
    from registry import Registry

    home = demo_home(a.home)
    registry = Registry(home=home)
    rows = held_in(home, 2 if a.smoke else a.per_task)
    c = Composer(registry)
    chance = 1 / len(c.ctx.adapter_names)
    results = []
    for router in ROUTERS:
        reports = c.inspect([r["prompt"] for r in rows], router)
        own = sum(rep["per_token"]["top1"].get(r["task"], 0.0) for rep, r in zip(reports, rows)) / len(rows)
        results.append({"router": router, "own_top1": round(own, 4), "x_chance": round(own / chance, 2)})
    experts = registry.list(kind="lora")
    acts = Activations(registry.list(kind="base")[0].path)
    bound = centroid_bound(acts, experts, rows)
    results.append(
        {"router": "ideal centroid gate", "own_top1": round(bound, 4), "x_chance": round(bound / chance, 2)}
    )
    targets = {
        f"{r['router']} >= 3x chance": r["x_chance"] >= 3
        for r in results
        if r["router"] in ("phatgoose", "arrow")
    }
    targets["similarity"] = similarity(registry, acts, experts, rows)  # context, not a target
    write("token_routing", a, results, targets, ["router", "own_top1", "x_chance"])


if __name__ == "__main__":
    main()
