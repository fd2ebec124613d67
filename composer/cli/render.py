"""Everything the command line prints: rich tables on stdout, and plain JSON.

Contract: each `*_table` / `print_*` function takes plain data (dicts, records, reports as
the library returns them) and prints it to stdout through the shared console `out`, which
follows `sys.stdout` at print time (so capture works). `print_json` prints plain indented
JSON with `print` (no colours, no wrapping), so `--json` output is machine-readable.
Nothing here reads settings or the registry.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from rich.console import Console
from rich.markup import escape
from rich.table import Table

out = Console()


def print_json(data) -> None:
    print(json.dumps(data, indent=2))


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1%}"


def skill_table(rows: list[dict]) -> None:
    """The demo ocean's per-skill accuracies (`build_demo` results or report.json's "skills")."""
    t = Table(title="Demo ocean on held-in prompts: exact match, and teacher-forced answer-token accuracy")
    for col in ("skill", "domain", "LoRA", "base", "expert", "base tok", "expert tok"):
        t.add_column(col, justify="left" if col in ("skill", "domain", "LoRA") else "right")
    for r in rows:
        t.add_row(
            r["skill"],
            r["domain"],
            r["lora"],
            *(f"{r[k]:.1%}" for k in ("base_acc", "expert_acc", "base_tok", "expert_tok")),
        )
    out.print(t)


def experts_table(recs: Iterable) -> None:
    """Registry records, one row each."""
    t = Table(title="Registry")
    for col in ("name", "ver", "kind", "base", "domains", "description"):
        t.add_column(col)
    for r in recs:
        t.add_row(r.name, str(r.version), r.kind, r.base_model or "", ",".join(r.domains), r.description[:60])
    out.print(t)


def records(recs: list, as_json: bool) -> None:
    """Registry records as JSON (`to_dict`) or as the experts table."""
    if as_json:
        print_json([r.to_dict() for r in recs])
    else:
        experts_table(recs)


def routed_answers(picked: list[dict], outs: list, router: str) -> None:
    """Benchmark rows (prompt, answer) next to the routed completions for them."""
    t = Table(title=f"Routed generation on held-back paraphrases (router: {router})")
    for col in ("prompt", "expert", "answer", "expected"):
        t.add_column(col)
    for r, o in zip(picked, outs):
        t.add_row(r["prompt"], ", ".join(o.plan.experts) or "(base)", o.text, r["answer"])
    out.print(t)


def route_reports(reports: list[dict]) -> None:
    """`Composer.inspect` reports: the plan per prompt, and per-layer usage for token routers."""
    for r in reports:
        weights = ", ".join(f"{e} {w:.2f}" for e, w in zip(r["experts"], r["weights"])) or "(base model)"
        if r["mode"] == "token":
            weights = f"per token among {len(r['experts'])} experts"
        out.print(
            f"[bold]{escape(r['prompt'])}[/bold]\n  {r['router']} -> {r['mode']}: {weights}\n"
            f"  {escape(r['explanation'])}"
        )
        if r["per_token"]:
            layers_table(r["per_token"])


def layers_table(report: dict) -> None:
    """Share of routing weight per layer and expert, and each expert's top-1 share."""
    layers = list(report["layers"])
    t = Table(title="share of routing weight per layer (all modules, all prompt tokens)")
    t.add_column("expert")
    for layer in layers:
        t.add_column(layer.rsplit(".", 1)[-1], justify="right")
    t.add_column("top-1", justify="right")
    for e in report["top1"]:
        t.add_row(e, *(f"{report['layers'][la].get(e, 0):.2f}" for la in layers), f"{report['top1'][e]:.2f}")
    out.print(t)


def completions(prompts: list[str], outs: list) -> None:
    for prompt, o in zip(prompts, outs):
        out.print(
            f"[bold]{escape(prompt)}[/bold]\n  {escape(o.text)}\n"
            f"  [dim]{o.plan.router}: {escape(o.plan.explanation)}[/dim]"
        )


def routers_table(schemas: dict[str, dict]) -> None:
    """Router names, what they do, and their config defaults."""
    t = Table(title="Routers")
    for col in ("name", "what it does", "config (default)"):
        t.add_column(col)
    for name, s in schemas.items():
        props = s["config"].get("properties", {})
        t.add_row(name, s["description"], ", ".join(f"{k}={v.get('default')}" for k, v in props.items()))
    out.print(t)


def eval_table(title: str, rows: list[dict]) -> None:
    """An evaluation's main summary rows (`composer.eval.report.main_rows`)."""
    t = Table(title=title)
    for col in ("router", "held-in", "held-out", "overall", "oracle agr.", "experts/req"):
        t.add_column(col, justify="left" if col == "router" else "right")
    for r in rows:
        t.add_row(
            r["router"],
            _pct(r["held_in"]),
            _pct(r["held_out"]),
            _pct(r["overall"]),
            _pct(r["oracle_agreement"]),
            f"{r['experts_per_request']:.2f}",
        )
    out.print(t)
