"""Routing introspection for token-level routers: who served which token, where.

Contract:
- `token_report(trace, tokens, slot_names, row=0)` turns a `RoutingTrace` of one forward
  pass into JSON-able views of one row:
    tokens   the prompt's tokens (decoded one by one)
    modules  module path -> per token, the kept [expert, weight] pairs (best first)
    usage    module path -> expert -> {"tokens": tokens that kept it, "weight": mean weight}
    layers   layer -> expert -> share of that layer's total routing weight (rows sum to 1)
    top1     expert -> share of (token, module) decisions where it ranked first
- `layer_of(path)` names a module's layer ("layers.3" for model.layers.3.mlp.up_proj).
- `plot_usage(layers, path, title)` writes a layer x expert heat-map PNG (matplotlib,
  imported only here) — the evaluation report's per-router usage figure.
- `token_weights(report)` -> (experts, tokens x experts mean routing weight over modules);
  `plot_tokens(report, path, title)` draws it: which expert each prompt token went to
  (`composer route --plot DIR`): on a two-domain prompt, the switch between its parts.
"""

from __future__ import annotations

import re
import textwrap
from collections import Counter, defaultdict
from pathlib import Path

_LAYER = re.compile(r"(?:^|\.)(layers?|h|blocks?)\.(\d+)\.")


def layer_of(path: str) -> str:
    m = _LAYER.search(path)
    return f"{m[1]}.{int(m[2]):d}" if m else path.rsplit(".", 1)[0]


def token_report(trace, tokens: list[str], slot_names: dict[int, str], row: int = 0) -> dict:
    modules: dict[str, list] = {}
    usage: dict[str, dict] = {}
    layer_w: dict[str, Counter] = defaultdict(Counter)
    top1: Counter = Counter()
    for path, rows, slots, weights in trace.calls:
        hit = (rows == row).nonzero()
        if not len(hit):
            continue
        i = int(hit[0])
        per_token = []
        count, wsum = Counter(), Counter()
        for s_row, w_row in zip(slots[i].tolist(), weights[i].tolist()):
            kept = [(slot_names.get(s, f"slot{s}"), round(w, 4)) for s, w in zip(s_row, w_row) if s >= 0]
            kept.sort(key=lambda p: -p[1])
            per_token.append([list(p) for p in kept])
            for e, w in kept:
                count[e] += 1
                wsum[e] += w
                layer_w[layer_of(path)][e] += w
            if kept:
                top1[kept[0][0]] += 1
        modules.setdefault(path, []).extend(per_token)
        n = max(1, len(per_token))
        usage[path] = {e: {"tokens": count[e], "weight": round(wsum[e] / n, 4)} for e in sorted(count)}
    layers = {}
    for layer, c in sorted(layer_w.items(), key=lambda kv: _sort_key(kv[0])):
        total = sum(c.values()) or 1.0
        layers[layer] = {e: round(w / total, 4) for e, w in sorted(c.items())}
    decisions = sum(top1.values()) or 1
    return {
        "tokens": tokens,
        "modules": modules,
        "usage": usage,
        "layers": layers,
        "top1": {e: round(n / decisions, 4) for e, n in top1.most_common()},
    }


def _sort_key(layer: str):
    m = re.search(r"(\d+)$", layer)
    return (layer.rsplit(".", 1)[0], int(m[1]) if m else -1)


def _save(fig, path: str | Path, plt) -> Path:
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_usage(layers: dict[str, dict[str, float]], path: str | Path, title: str = "expert usage") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    experts = sorted({e for row in layers.values() for e in row})
    names = list(layers)
    grid = [[layers[n].get(e, 0.0) for e in experts] for n in names]
    fig, ax = plt.subplots(figsize=(1.2 + 0.7 * len(experts), 1.2 + 0.45 * len(names)))
    im = ax.imshow(grid, cmap="viridis", vmin=0, aspect="auto")
    ax.set_xticks(range(len(experts)), experts, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("expert")
    ax.set_ylabel("layer")
    ax.set_title("\n".join(textwrap.wrap(title, 12 + 8 * len(experts))), fontsize=10)
    fig.colorbar(im, ax=ax, label="share of routing weight")
    return _save(fig, path, plt)


def token_weights(report: dict) -> tuple[list[str], list[list[float]]]:
    """Per prompt token, each expert's routing weight averaged over the modules."""
    modules = list(report["modules"].values())
    experts = sorted({e for per_token in modules for kept in per_token for e, _ in kept})
    col = {e: j for j, e in enumerate(experts)}
    grid = [[0.0] * len(experts) for _ in report["tokens"]]
    for per_token in modules:
        for t, kept in enumerate(per_token):
            for e, w in kept:
                grid[t][col[e]] += w / len(modules)
    return experts, grid


def plot_tokens(report: dict, path: str | Path, title: str = "routing per token") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    experts, grid = token_weights(report)
    tokens = [t.replace("\n", "\\n") for t in report["tokens"]]
    fig, ax = plt.subplots(figsize=(1.5 + 0.32 * len(tokens), 1.2 + 0.4 * len(experts)))
    im = ax.imshow(list(map(list, zip(*grid))), cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(tokens)), tokens, rotation=70, ha="right", fontsize=8)
    ax.set_yticks(range(len(experts)), experts)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, label="mean weight over modules")
    return _save(fig, path, plt)
