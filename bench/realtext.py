"""Routing real English: Debian package summaries, one expert per archive section.

The set (`bench/data/realtext.jsonl`, committed; `--rebuild` regenerates it from
`apt-cache dumpavail`, after `apt-get update`, on any Debian machine): 12 sections with
distinct subjects (games, sound, graphics, science, math, mail, database, editors,
electronics, fonts, video, web); per section 50 packages chosen by a hash of their name,
each package's one-line summary a prompt: 30 registered as the expert's examples, 20
held out. Every query-level router that ranks experts from examples (retrieval, its top-m
mean, density at three bandwidths, centroid, coe's k-NN classifier, loraretriever's and
ensemble's first choice) routes the held-out summaries through the routers' own code on
the same MiniLM embeddings, next to a logistic-regression probe trained on the registered
ones (the strongest simple baseline for "which section is this?"). One split of 240
held-out prompts moves a ratio by ~0.005 a prompt, and which 30 are registered moves it
by several points, so the file's split is followed by `--splits`-1 fresh draws of the
registered 30 per section (seeded; 10 splits in all by default) and each router is
reported on the file's split and as the mean and min over all. Target: the default router
(`composer.settings.DEFAULT_ROUTER`) ≥ 0.95x the probe on that mean, and no router above it.

    python bench/realtext.py [--smoke] [--splits N] [--rebuild]
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from common import args, write

SECTIONS = [
    "games", "sound", "graphics", "science", "math", "mail",
    "database", "editors", "electronics", "fonts", "video", "web",
]  # fmt: skip
DATA = Path(__file__).resolve().parent / "data" / "realtext.jsonl"
REGISTERED, HELD_OUT = 30, 20


def parse_dumpavail(text: str) -> dict[str, dict[str, str]]:
    """{section: {package: summary}} from `apt-cache dumpavail` (the section's area prefix dropped)."""
    out: dict[str, dict[str, str]] = {}
    for stanza in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line and line[0] != " ")
        name, section, summary = fields.get("Package"), fields.get("Section"), fields.get("Description")
        if name and section and summary:
            out.setdefault(section.rsplit("/", 1)[-1], {}).setdefault(name, summary.strip())
    return out


def build_rows(packages: dict[str, dict[str, str]]) -> list[dict]:
    rows = []
    for section in SECTIONS:
        by_hash = sorted(
            packages.get(section, {}).items(), key=lambda kv: hashlib.sha1(kv[0].encode()).hexdigest()
        )
        seen, picked = set(), []
        for name, summary in by_hash:
            if len(summary.split()) >= 3 and summary.lower() not in seen:
                seen.add(summary.lower())
                picked.append((name, summary))
        if len(picked) < REGISTERED + HELD_OUT:
            raise SystemExit(
                f"section {section}: {len(picked)} usable packages, need {REGISTERED + HELD_OUT}"
            )
        for i, (name, summary) in enumerate(picked[: REGISTERED + HELD_OUT]):
            split = "registered" if i < REGISTERED else "held-out"
            rows.append({"prompt": summary, "expert": section, "package": name, "split": split})
    return rows


def probe_accuracy(X: np.ndarray, y: np.ndarray, Xt: np.ndarray, yt: np.ndarray, l2: float = 1e-3) -> float:
    """Multinomial logistic regression on the embeddings (L-BFGS, L2), top-1 accuracy on Xt."""
    torch.manual_seed(0)
    Xs, ys = torch.tensor(X), torch.tensor(y)
    W = torch.zeros(X.shape[1], int(y.max()) + 1, requires_grad=True)
    b = torch.zeros(int(y.max()) + 1, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], max_iter=500, line_search_fn="strong_wolfe")

    def loss():
        opt.zero_grad()
        v = torch.nn.functional.cross_entropy(Xs @ W + b, ys) + l2 * (W**2).sum()
        v.backward()
        return v

    opt.step(loss)
    with torch.no_grad():
        return float(((torch.tensor(Xt) @ W + b).argmax(1) == torch.tensor(yt)).float().mean())


class Memo:
    """The encoder with its embeddings remembered per text: every split reuses them."""

    def __init__(self, encoder):
        self.encoder, self.name, self.seen = encoder, encoder.name, {}

    def encode(self, texts):
        new = [t for t in dict.fromkeys(texts) if t not in self.seen]
        if new:
            self.seen.update(zip(new, self.encoder.encode(new)))
        return np.stack([self.seen[t] for t in texts])


VARIANTS = {
    "retrieval": ("retrieval", {}),
    "retrieval (top_m=3)": ("retrieval", {"top_m": 3}),
    "retrieval (top_m=5)": ("retrieval", {"top_m": 5}),
    "density": ("density", {}),
    "density (bandwidth 0.05)": ("density", {"bandwidth": 0.05}),
    "density (bandwidth 0.2)": ("density", {"bandwidth": 0.2}),
    "centroid": ("centroid", {}),
    "coe (k-NN classifier)": ("coe", {}),
    "loraretriever (first of top-3)": ("loraretriever", {"top_k": 3}),
    "ensemble (first of top-2)": ("ensemble", {"top_k": 2}),
}


def evaluate(rows: list[dict], encoder) -> dict[str, float]:
    """{router label: top-1 on the held-out rows}, the probe's under "probe"."""
    import routers
    from routers import Query
    from routers.index import ExampleIndex

    reg = [r for r in rows if r["split"] == "registered"]
    held = [r for r in rows if r["split"] == "held-out"]
    experts = sorted({r["expert"] for r in rows})
    X = encoder.encode([r["prompt"] for r in reg])
    vectors = {e: X[[i for i, r in enumerate(reg) if r["expert"] == e]] for e in experts}
    store: dict = {}
    ctx = SimpleNamespace(  # the RouterContext surface these routers use, over the set's embeddings
        index=ExampleIndex(vectors),
        encoder=encoder,
        expert_names=experts,
        adapter_names=experts,
        experts=[],
        base="realtext",
        save_artifact=lambda r, k, d, m: store.__setitem__((r, k), (m, d)),
        load_artifact=lambda r, k: store.get((r, k)),
    )
    routers.method("coe").fit(ctx, rows=[{"prompt": r["prompt"], "category": r["expert"]} for r in reg])
    queries = [Query(prompt=r["prompt"]) for r in held]
    truth = [r["expert"] for r in held]
    out = {
        "probe": probe_accuracy(
            X,
            np.array([experts.index(r["expert"]) for r in reg]),
            encoder.encode([r["prompt"] for r in held]),
            np.array([experts.index(t) for t in truth]),
        )
    }
    for label, (name, config) in VARIANTS.items():
        plans = routers.build(name, ctx, **config).route(queries)
        out[label] = float(np.mean([bool(p.experts) and p.experts[0] == t for p, t in zip(plans, truth)]))
    return out


def resplit(rows: list[dict], seed: int) -> list[dict]:
    """The same rows with another draw of which REGISTERED per section are registered."""
    rng = np.random.default_rng(seed)
    out = []
    for section in sorted({r["expert"] for r in rows}):
        mine = [r for r in rows if r["expert"] == section]
        chosen = set(rng.choice(len(mine), REGISTERED, replace=False).tolist())
        out += [{**r, "split": "registered" if i in chosen else "held-out"} for i, r in enumerate(mine)]
    return out


def summarise(runs: list[dict[str, float]], default: str) -> tuple[list[dict], dict]:
    """Per router: top-1 on the committed split, and top-1/probe over every split (mean, min)."""
    results = []
    for label in ["probe", *VARIANTS]:
        ratios = [run[label] / run["probe"] for run in runs]
        name = "logistic-regression probe" if label == "probe" else label
        results.append(
            {
                "router": name + (" (the default)" if label == default else ""),
                "top1": runs[0][label],
                "top1/probe": ratios[0],
                "mean top1/probe": float(np.mean(ratios)),
                "min top1/probe": float(np.min(ratios)),
            }
        )
    mean = {r["router"]: r["mean top1/probe"] for r in results[1:]}
    best = max(mean, key=mean.get)
    mine = mean[default + " (the default)"]
    targets = {
        f"default router ({default}) >= 0.95x the probe, mean over {len(runs)} splits": mine >= 0.95,
        f"the default is the best router by that mean (best: {best})": mean[best] <= mine,
    }
    return results, targets


def main() -> None:
    a = args(
        __doc__.splitlines()[0],
        rebuild={"action": "store_true", "help": "regenerate the set from apt-cache"},
        splits={
            "type": int,
            "default": 10,
            "help": "draws of registered/held-out rows (the first: the file's)",
        },
    )
    if a.rebuild:
        text = subprocess.run(["apt-cache", "dumpavail"], capture_output=True, text=True, check=True).stdout
        DATA.parent.mkdir(parents=True, exist_ok=True)
        DATA.write_text("".join(json.dumps(r) + "\n" for r in build_rows(parse_dumpavail(text))))
    rows = [json.loads(line) for line in DATA.read_text().splitlines()]
    if a.smoke:  # 3 sections, 2 splits
        rows, a.splits = [r for r in rows if r["expert"] in SECTIONS[:3]], min(a.splits, 2)
    from composer.settings import DEFAULT_ROUTER
    from routers.encoders import MiniLM

    encoder = Memo(MiniLM())
    runs = [evaluate(rows if i == 0 else resplit(rows, i), encoder) for i in range(a.splits)]
    results, targets = summarise(runs, DEFAULT_ROUTER)
    write(
        "realtext", a, results, targets, ["router", "top1", "top1/probe", "mean top1/probe", "min top1/probe"]
    )


if __name__ == "__main__":
    main()
