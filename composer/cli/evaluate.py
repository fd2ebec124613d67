"""`composer eval`: routers side by side over a benchmark, with a report on disk.

Contract: `eval [--benchmark demo|FILE] [--routers SPECS] [--limit N] [--out DIR] ...` loads
the benchmark (`BenchmarkError` for a malformed one: one line, exit 1, nothing written),
runs every router spec in this process (or with `--ray` on `--workers` Ray actors), reusing
the output cache unless `--no-cache`, writes results.json, report.md and plots into `--out`
(the report names the command line that reproduces it) and prints the summary table.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from composer.cli import render
from composer.cli.common import globals_of, load_settings, open_composer


def evaluate(
    ctx: typer.Context,
    benchmark: Annotated[
        str, typer.Option("--benchmark", help="'demo' (the demo ocean's benchmark.jsonl) or a JSONL file")
    ] = "demo",
    routers: Annotated[
        str,
        typer.Option(
            "--routers",
            help="'all', or a comma list: retrieval, glider(alpha=100), base, expert:NAME, experts, ...",
        ),
    ] = "all",
    limit: Annotated[
        int | None,
        typer.Option("--limit", help="examples per split (round-robin over tasks)", show_default="all"),
    ] = None,
    out_dir: Annotated[str, typer.Option("--out", help="output directory")] = "eval-out",
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", help="tokens to generate at most")] = 32,
    cache: Annotated[
        str | None,
        typer.Option("--cache", help="output cache file", show_default="$COMPOSER_HOME/eval-cache.sqlite"),
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="neither read nor write the output cache")
    ] = False,
    ray: Annotated[
        bool, typer.Option("--ray", help="run shards on Ray actors (default: in this process)")
    ] = False,
    workers: Annotated[int, typer.Option("--workers", help="Ray actors (with --ray)")] = 2,
    base: Annotated[
        str | None, typer.Option("--base", help="base model", show_default="the only one registered")
    ] = None,
) -> None:
    """Evaluate routers side by side over a benchmark: results.json, report.md and plots in --out."""
    from composer.eval import load_benchmark, parse_specs, write_report
    from composer.eval.report import main_rows

    settings = load_settings(ctx, base=base)
    reg = settings.registry()
    examples = load_benchmark(benchmark, reg, limit)
    cache_path = Path(cache) if cache else reg.home / "eval-cache.sqlite"
    decoding = {"max_new_tokens": max_new_tokens}
    c = open_composer(settings, reg)
    specs = parse_specs(routers, [r.name for r in c.experts()])
    if ray:
        from ray_cluster.eval import evaluate_on_ray

        run = evaluate_on_ray(
            settings,
            c.base,
            examples,
            specs,
            decoding,
            None if no_cache else str(cache_path),
            workers,
            benchmark=benchmark,
        )
    else:
        from composer.eval import evaluate as run_eval
        from composer.eval.cache import OutputCache

        run = run_eval(
            c, examples, specs, decoding, None if no_cache else OutputCache(cache_path), benchmark=benchmark
        )
    argv = globals_of(ctx).argv
    rows = write_report(run, out_dir, command="composer " + shlex.join(argv) if argv else "")
    title = f"{benchmark}: {len(examples)} examples ({run.generated} executed, {run.cached} cached)"
    render.eval_table(title, main_rows(rows))
    render.out.print(f"wrote {Path(out_dir) / 'report.md'}, results.json and plots")
