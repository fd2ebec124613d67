"""`composer route`, `generate`, `routers` and `fit`: routing decisions, routed generation,
the router zoo, and fitting routers.

Contract:
- `route PROMPT... [--router R] [-c KEY=VALUE]... [--base B] [--json] [--plot DIR]`: the plan
  per prompt (and per-layer expert usage for token-level routers), via `Composer.inspect`;
  `--plot` draws each token-level plan's token x expert weights (`introspect.plot_tokens`).
- `generate PROMPT... [--router R | --expert NAME] [-c KEY=VALUE]... [--max-new-tokens N]
  [--temperature T] [--json]`: one heterogeneous batch through `Composer.generate`.
- `routers [--json]`: names, descriptions and config schemas (no model is loaded).
- `fit ROUTER [--expert NAME]... [options]`: ROUTER is passed to `Composer.fit` as given
  (the library rejects unknown names with `RouterError`); `--expert` restricts it to those
  experts. coe/bench_coe take their data from files, from `--from-eval DIR`, or from the
  registered examples; retrieval's abstention thresholds from `--data` (labelled prompts).
  Prints the JSON summary `Composer.fit` returns. `fit ROUTER --target-share P [--data F]
  [--expensive-above X] [-c KEY=VALUE]` instead calibrates ROUTER's cost weight
  (`Composer.calibrate_cost`) on F's prompts (default: every expert's registered examples).
Errors propagate to `main` (one line, exit 1).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from composer.cli import render
from composer.cli.common import (
    CategoryField,
    CommandError,
    FitBy,
    Level,
    load_examples,
    load_json,
    load_settings,
    open_composer,
    parse_config,
)
from composer.cli.render import out

Prompts = Annotated[
    list[str],
    typer.Argument(metavar="PROMPT", help="one or more prompts (served as one batch)", show_default=False),
]
RouterOpt = Annotated[
    str | None,
    typer.Option("--router", help="router name", show_default="$COMPOSER_DEFAULT_ROUTER or density"),
]
ConfigOpt = Annotated[
    list[str] | None,
    typer.Option(
        "-c", "--config", metavar="KEY=VALUE", help="router config, JSON values (e.g. -c top_k=2); repeatable"
    ),
]
BaseOpt = Annotated[
    str | None, typer.Option("--base", help="base model", show_default="the only one registered")
]
JsonFlag = Annotated[bool, typer.Option("--json", help="print JSON")]


def route(
    ctx: typer.Context,
    prompt: Prompts,
    router: RouterOpt = None,
    config: ConfigOpt = None,
    base: BaseOpt = None,
    as_json: JsonFlag = False,
    plot: Annotated[
        str | None,
        typer.Option(
            "--plot", metavar="DIR", help="token routers: draw token x expert weights, one PNG per prompt"
        ),
    ] = None,
) -> None:
    """Show which experts a router picks for each prompt, and why."""
    settings = load_settings(ctx, base=base, default_router=router)
    cfg = parse_config(config)
    # plans, plus per-token choices for token routers
    reports = open_composer(settings).inspect(prompt, **cfg)
    if plot:
        from composer.introspect import plot_tokens

        for i, r in enumerate(reports):
            if r["per_token"]:
                title = f"{r['router']}: {r['prompt'][:70]}"
                out.print(f"wrote {plot_tokens(r['per_token'], Path(plot) / f'tokens_{i}.png', title)}")
    if as_json:
        render.print_json(reports)
    else:
        render.route_reports(reports)


def generate(
    ctx: typer.Context,
    prompt: Prompts,
    router: RouterOpt = None,
    config: ConfigOpt = None,
    base: BaseOpt = None,
    as_json: JsonFlag = False,
    expert: Annotated[
        str | None, typer.Option("--expert", help="serve this expert (or the base model's name), no routing")
    ] = None,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", help="tokens to generate at most")] = 32,
    temperature: Annotated[float, typer.Option("--temperature", help="0: greedy")] = 0.0,
) -> None:
    """Route each prompt and generate (or pin one expert with --expert)."""
    if expert and (router or config):
        raise CommandError("give either --expert or --router/--config, not both")
    settings = load_settings(ctx, base=base, default_router=router)
    cfg = parse_config(config)
    outs = open_composer(settings).generate(
        prompt, expert=expert, max_new_tokens=max_new_tokens, temperature=temperature, **cfg
    )
    if as_json:
        render.print_json([o.to_dict() for o in outs])
    else:
        render.completions(prompt, outs)


def routers(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="print the JSON schemas")] = False,
) -> None:
    """List the routers and their config schemas."""
    load_settings(ctx)
    import routers as zoo

    schemas = zoo.schemas()
    if as_json:
        render.print_json(schemas)
    else:
        render.routers_table(schemas)


def from_eval(path: str, category: CategoryField) -> tuple[list[dict], list[dict]]:
    """(labelled prompts, per-expert results) from an evaluation's results.json."""
    f = Path(path) / "results.json" if Path(path).is_dir() else Path(path)
    if not f.is_file():
        raise CommandError(f"no evaluation results at {f} (run `composer eval --out DIR` first)")
    recs = json.loads(f.read_text())["records"]

    def label(r: dict) -> str:
        return r["task"] if category is CategoryField.task else r.get("category") or r["task"]

    results = [
        {"prompt": r["prompt"], "expert": r["router"][7:], "score": float(r["correct"]), "category": label(r)}
        for r in recs
        if r["router"].startswith("expert:")
    ]
    if not results:
        raise CommandError(
            "the evaluation has no pinned-expert runs to fit from: run `composer eval` with "
            "--routers all (or experts)"
        )
    rows = list({r["prompt"]: {"prompt": r["prompt"], "category": r["category"]} for r in results}.values())
    return rows, results


def _fit_kwargs(
    router: str,
    data: str | None,
    map_: str | None,
    results: str | None,
    eval_dir: str | None,
    by: FitBy,
    level: Level,
    category: CategoryField,
) -> dict:
    """`Composer.fit` keyword arguments for coe, bench_coe and retrieval's thresholds; none for
    the other fitters."""
    files = {"--data": data, "--map": map_, "--results": results, "--from-eval": eval_dir}
    if router == "retrieval":
        given = [opt for opt, v in files.items() if v is not None and opt != "--data"]
        if given:
            raise CommandError(f"{', '.join(given)}: retrieval's thresholds fit from --data only")
        return {"rows": load_json(data, "--data")}
    if router not in ("coe", "bench_coe"):
        given = [opt for opt, v in files.items() if v is not None]
        if given:
            verb = "apply" if len(given) > 1 else "applies"
            raise CommandError(
                f"{', '.join(given)} {verb} to coe, bench_coe and retrieval only, not {router!r}"
            )
        return {}
    kw = {"results": load_json(results, "--results")}
    if eval_dir:
        if results or data or map_:
            raise CommandError("--from-eval replaces --data, --map and --results")
        rows, kw["results"] = from_eval(eval_dir, category)
        if router == "coe":
            kw["rows"] = rows
    if router == "coe":
        kw.setdefault("rows", load_json(data, "--data"))
        kw.update(expert_map=load_json(map_, "--map"), by=by.value)
    else:
        kw.update(level=level.value)
    return kw


def fit(
    ctx: typer.Context,
    router: Annotated[
        str,
        typer.Argument(
            metavar="ROUTER",
            help="coe, bench_coe, retrieval (abstention thresholds; fitted over all experts) or a per-expert "
            "artifact (embeddings, phatgoose, arrow, spectr, hidden, glider: backfills experts that lack it)",
            show_default=False,
        ),
    ],
    expert: Annotated[
        list[str] | None,
        typer.Option("--expert", metavar="NAME", help="fit for (or over) these experts only; repeatable"),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            help="coe: labelled prompts .jsonl ({prompt, category}; default: registered examples); "
            "retrieval: {prompt, expert} (expert null: no expert should take it)",
        ),
    ] = None,
    map_: Annotated[str | None, typer.Option("--map", help="coe: category -> expert .json")] = None,
    results: Annotated[
        str | None,
        typer.Option(
            "--results",
            help="evaluation results .jsonl ({prompt, expert, score, category}); bench_coe default: "
            "score every expert on the registered examples",
        ),
    ] = None,
    by: Annotated[FitBy, typer.Option("--by", help="coe: default labels")] = FitBy.expert,
    level: Annotated[Level, typer.Option("--level", help="bench_coe")] = Level.query,
    eval_dir: Annotated[
        str | None,
        typer.Option(
            "--from-eval",
            metavar="DIR",
            help="fit from `composer eval` results: per-category best expert (coe), per-query correctness of "
            "every expert (bench_coe)",
        ),
    ] = None,
    category: Annotated[
        CategoryField,
        typer.Option(
            "--category",
            help="with --from-eval: what a category is (the benchmark's task, or its category field)",
        ),
    ] = CategoryField.task,
    target_share: Annotated[
        float | None,
        typer.Option(
            "--target-share",
            help="calibrate ROUTER's cost weight so this share of prompts (--data: .jsonl {prompt} or one "
            "a line; default: the registered examples) goes to the expensive experts; requests then ask "
            'routing {"cost_weight": "calibrated"}',
        ),
    ] = None,
    expensive_above: Annotated[
        float | None,
        typer.Option(
            "--expensive-above",
            help="with --target-share: price above which an expert is expensive "
            "(default: above the cheapest expert's)",
        ),
    ] = None,
    config: Annotated[
        list[str] | None,
        typer.Option("--config", "-c", metavar="KEY=VALUE", help="with --target-share: the router's config"),
    ] = None,
    base: BaseOpt = None,
) -> None:
    """Fit a router over all experts (coe, bench_coe) or backfill a per-expert artifact, into the registry;
    with --target-share, calibrate a router's quality/cost knob."""
    settings = load_settings(ctx, base=base)
    if target_share is not None:
        c = open_composer(settings)
        prompts = (
            [e["prompt"] for e in load_examples(data)]
            if data
            else [e["prompt"] for r in c.experts() for e in r.examples]
        )
        render.print_json(
            c.calibrate_cost(router, prompts, target_share, expensive_above, **parse_config(config))
        )
        return
    kw = _fit_kwargs(router, data, map_, results, eval_dir, by, level, category)
    if expert:
        kw["experts"] = list(expert)
    render.print_json(open_composer(settings).fit(router, **kw))
