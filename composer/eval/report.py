"""Summaries, results.json, report.md and plots of an `EvalRun`.

Contract: `summarise(run)` -> one row per spec: accuracy held-in / held-out / overall,
agreement with the oracle expert (over examples whose task has one, among plans that
pick one expert — select, ensemble winner, or base = no expert; "n/a" for merges and
per-token plans), mean experts per
request (select 1, merge/ensemble all listed, per-token top-k, base 0), mean active
adapter parameters per request (per token for token-level plans), examples/s (wall time
of the spec, cache hits included), mean cost per request (the experts' prices; None when
none is priced) and the best pinned expert flagged `best_single`.
`write_report(run, out_dir, command="")` writes results.json (records, summary, settings,
usage), report.md (the table, with the pinned experts apart) and PNGs:
accuracy_by_split.png, accuracy_by_task.png, quality_cost.png (when experts have prices:
accuracy vs mean cost per request, one point per router, the pinned experts with their
`frontier`, RouterBench's non-decreasing convex hull) and usage_<router>.png per
token-level router.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

from composer.eval.benchmark import SPLITS
from composer.eval.runner import EvalRun
from composer.introspect import plot_usage

COLUMNS = [
    ("router", "router"),
    ("held_in", "held-in"),
    ("held_out", "held-out"),
    ("overall", "overall"),
    ("oracle_agreement", "agrees w/ oracle"),
    ("experts_per_request", "experts/req"),
    ("active_params", "active adapter params"),
    ("examples_per_s", "examples/s"),
    ("cost_per_request", "cost/req"),
]


def _mean(xs) -> float | None:
    xs = list(xs)
    return sum(xs) / len(xs) if xs else None


def _picks(r: dict) -> bool:
    """Whether a record names one expert to compare with the oracle's (merges and per-token don't)."""
    return r["mode"] in ("select", "ensemble", "base")


def _active(r: dict, params: dict[str, int]) -> tuple[float, float]:
    """(experts per request, active adapter parameters) of one record."""
    sizes = [params.get(e, 0) for e in r["experts"]]
    if r["mode"] == "token":
        k = min(r["top_k"] or 1, len(sizes))
        return k, k * (_mean(sizes) or 0)
    return len(sizes), sum(sizes)


def summarise(run: EvalRun) -> list[dict]:
    by_spec: dict[str, list[dict]] = defaultdict(list)
    for r in run.records:
        by_spec[r["router"]].append(r)
    rows = []
    for spec in run.specs:
        recs = by_spec[spec.label]
        acc = {s: _mean(r["correct"] for r in recs if r["split"] == s) for s in SPLITS}
        agree = _mean(
            r["served_by"] == run.oracle[r["id"]] for r in recs if run.oracle.get(r["id"]) and _picks(r)
        )
        active = [_active(r, run.params) for r in recs]
        rows.append(
            {
                "router": spec.label,
                "kind": spec.kind,
                "held_in": acc["held-in"],
                "held_out": acc["held-out"],
                "overall": _mean(r["correct"] for r in recs),
                "oracle_agreement": agree,
                "experts_per_request": _mean(a for a, _ in active),
                "active_params": _mean(p for _, p in active),
                "examples_per_s": len(recs) / max(run.seconds.get(spec.label, 0.0), 1e-9),
                "cost_per_request": _mean(r["cost"] for r in recs if r.get("cost") is not None),
                "n": len(recs),
            }
        )
    pinned = [r for r in rows if r["kind"] == "expert"]
    if pinned:
        max(pinned, key=lambda r: (r["overall"] or 0, r["router"]))["best_single"] = True
    return rows


def _fmt(key: str, v) -> str:
    if v is None:
        return "n/a"
    if key in ("held_in", "held_out", "overall", "oracle_agreement"):
        return f"{v:.1%}"
    if key == "active_params":
        return f"{v / 1000:.1f}k"
    if key == "experts_per_request":
        return f"{v:.2f}"
    if key == "examples_per_s":
        return f"{v:.0f}"
    if key == "cost_per_request":
        return f"{v:.3g}"
    return str(v)


def table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(h for _, h in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_fmt(k, r.get(k)) for k, _ in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


def main_rows(rows: list[dict]) -> list[dict]:
    """Routers and baselines, with the pinned experts folded into one best-single row."""
    out = []
    for r in rows:
        if r["kind"] != "expert":
            out.append(r)
        elif r.get("best_single"):
            out.append({**r, "router": f"best single expert ({r['router'][7:]})"})
    return out


def frontier(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """RouterBench's non-decreasing convex hull of (cost, accuracy) points: from the cheapest,
    the upper hull of the points that buy accuracy with cost (a mix of two experts reaches
    any point of the segment between them)."""
    hull: list[tuple[float, float]] = []
    for c, a in sorted(points, key=lambda p: (p[0], -p[1])):
        if hull and a <= hull[-1][1]:
            continue  # dearer and no better: dominated
        while len(hull) >= 2:
            (c1, a1), (c2, a2) = hull[-2], hull[-1]
            if (a2 - a1) * (c - c1) <= (a - a1) * (c2 - c1):  # hull[-1] lies on or below the chord
                hull.pop()
            else:
                break
        hull.append((c, a))
    return hull


def _quality_cost(rows: list[dict], out: Path, plt) -> Path | None:
    """Accuracy vs mean cost per request: one point per router, single experts with their hull."""
    priced = [r for r in rows if r.get("cost_per_request") is not None and r["overall"] is not None]
    if not priced:
        return None
    fig, ax = plt.subplots(figsize=(7, 5))
    singles = [r for r in priced if r["kind"] == "expert"]
    if singles:
        ax.scatter(
            [r["cost_per_request"] for r in singles],
            [100 * r["overall"] for r in singles],
            c="grey",
            marker="s",
            label="single experts",
        )
        hull = frontier([(r["cost_per_request"], 100 * r["overall"]) for r in singles])
        ax.plot([c for c, _ in hull], [a for _, a in hull], "--", c="grey", label="their convex hull")
    for r in priced:
        if r["kind"] != "expert":
            ax.scatter(r["cost_per_request"], 100 * r["overall"])
            ax.annotate(
                r["router"],
                (r["cost_per_request"], 100 * r["overall"]),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
    ax.set_xlabel("mean cost per request (experts' prices)")
    ax.set_ylabel("accuracy, all splits (%)")
    ax.set_title("quality vs cost")
    ax.legend(loc="lower right")
    fig.tight_layout()
    path = out / "quality_cost.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _plots(run: EvalRun, rows: list[dict], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = main_rows(rows)
    names = [r["router"] for r in shown]
    fig, ax = plt.subplots(figsize=(8, 1 + 0.4 * len(names)))
    for k, (split, key) in enumerate([("held-in", "held_in"), ("held-out", "held_out")]):
        ax.barh(
            [i + 0.4 * k for i in range(len(names))],
            [(r[key] or 0) * 100 for r in shown],
            height=0.4,
            label=split,
        )
    ax.set_yticks([i + 0.2 for i in range(len(names))], names)
    ax.invert_yaxis()
    ax.set_xlabel("exact match / accuracy (%)")
    ax.set_title(f"accuracy per router and split — {run.benchmark}")
    ax.legend(loc="lower right")
    fig.tight_layout()
    paths = [out / "accuracy_by_split.png"]
    fig.savefig(paths[0], dpi=120)
    plt.close(fig)

    tasks = sorted({r["task"] for r in run.records})
    acc: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for r in run.records:
        acc[(r["router"], r["task"])].append(r["correct"])
    labels = [r["router"] for r in rows]
    grid = [[100 * (_mean(acc[(lab, t)]) or 0) for t in tasks] for lab in labels]
    fig, ax = plt.subplots(figsize=(2 + 0.45 * len(tasks), 1.5 + 0.35 * len(labels)))
    im = ax.imshow(grid, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    ax.set_xticks(range(len(tasks)), tasks, rotation=60, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_title("accuracy per router and task (%)")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    paths.append(out / "accuracy_by_task.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    if (qc := _quality_cost(rows, out, plt)) is not None:
        paths.append(qc)
    for label, layers in run.usage.items():
        safe = re.sub(r"[^a-z0-9_.=-]+", "_", label.lower())
        paths.append(
            plot_usage(layers, out / f"usage_{safe}.png", f"{label}: expert usage per layer (held-out)")
        )
    return paths


def write_report(run: EvalRun, out_dir: str | Path, command: str = "") -> list[dict]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = summarise(run)
    (out / "results.json").write_text(
        json.dumps(
            {
                "benchmark": run.benchmark,
                "settings": run.settings,
                "command": command,
                "specs": [s.__dict__ for s in run.specs],
                "summary": rows,
                "usage": run.usage,
                "oracle": run.oracle,
                "cache": {"generated": run.generated, "cached": run.cached},
                "records": run.records,
            },
            indent=1,
        )
    )
    plots = _plots(run, rows, out)
    pinned = [r for r in rows if r["kind"] == "expert"]
    md = [f"# Evaluation: {run.benchmark}", ""]
    if command:
        md += ["Reproduce: `" + command + "`", ""]
    n_ex = len({r["id"] for r in run.records})
    md += [
        (
            f"{n_ex} examples; decoding {json.dumps(run.settings)}; {run.generated} rows executed, "
            f"{run.cached} answered from the output cache."
        ),
        "",
        table(main_rows(rows)),
        "",
    ]
    if pinned:
        md += ["## Every expert pinned", "", table(pinned), ""]
    md += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    (out / "report.md").write_text("\n".join(md))
    return rows
