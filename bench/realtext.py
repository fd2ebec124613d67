"""Routing real English: Debian package summaries, one expert per archive section.

The set (`bench/data/realtext.jsonl`, committed; `--rebuild` regenerates it from
`apt-cache dumpavail`, after `apt-get update`, on any Debian machine): 12 sections with
distinct subjects (games, sound, graphics, science, math, mail, database, editors,
electronics, fonts, video, web); per section 50 packages chosen by a hash of their name,
each package's one-line summary a prompt: 30 registered as the expert's examples, 20
held out. Every query-level router that ranks experts from examples (retrieval, its top-m
mean, centroid, coe's k-NN classifier, loraretriever's and ensemble's first choice) routes
the held-out summaries through the routers' own code on the same MiniLM embeddings, next
to a logistic-regression probe trained on the registered ones (the strongest simple
baseline for "which section is this?"). Target: the default router ≥ 0.95x the probe.

    python bench/realtext.py [--smoke] [--rebuild]
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


def evaluate(rows: list[dict], encoder) -> list[dict]:
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
    variants = {
        "retrieval": ("retrieval", {}),
        "retrieval (top_m=3)": ("retrieval", {"top_m": 3}),
        "retrieval (top_m=5)": ("retrieval", {"top_m": 5}),
        "centroid": ("centroid", {}),
        "coe (k-NN classifier)": ("coe", {}),
        "loraretriever (first of top-3)": ("loraretriever", {"top_k": 3}),
        "ensemble (first of top-2)": ("ensemble", {"top_k": 2}),
    }
    probe = probe_accuracy(
        X,
        np.array([experts.index(r["expert"]) for r in reg]),
        encoder.encode([r["prompt"] for r in held]),
        np.array([experts.index(t) for t in truth]),
    )
    out = [{"router": "logistic-regression probe", "top1": probe, "top1/probe": 1.0}]
    for label, (name, config) in variants.items():
        plans = routers.build(name, ctx, **config).route(queries)
        acc = float(np.mean([bool(p.experts) and p.experts[0] == t for p, t in zip(plans, truth)]))
        out.append({"router": label, "top1": acc, "top1/probe": acc / probe})
    return out


def main() -> None:
    a = args(
        __doc__.splitlines()[0], rebuild={"action": "store_true", "help": "regenerate the set from apt-cache"}
    )
    if a.rebuild:
        text = subprocess.run(["apt-cache", "dumpavail"], capture_output=True, text=True, check=True).stdout
        DATA.parent.mkdir(parents=True, exist_ok=True)
        DATA.write_text("".join(json.dumps(r) + "\n" for r in build_rows(parse_dumpavail(text))))
    rows = [json.loads(line) for line in DATA.read_text().splitlines()]
    if a.smoke:  # 3 sections
        rows = [r for r in rows if r["expert"] in SECTIONS[:3]]
    from routers.encoders import MiniLM

    results = evaluate(rows, MiniLM())
    default = next(r for r in results if r["router"] == "retrieval")
    best = max(results[1:], key=lambda r: r["top1"])
    targets = {
        "default router (retrieval) >= 0.95x the probe": default["top1/probe"] >= 0.95,
        f"the default is the best router (best: {best['router']})": best["top1"] <= default["top1"],
    }
    write("realtext", a, results, targets, ["router", "top1", "top1/probe"])


if __name__ == "__main__":
    main()
