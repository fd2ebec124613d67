"""`composer build-demo`, `demo` and `serve`: the demo ocean, and serving the registry over HTTP.

Contract:
- `build(registry, out, fast, seed, ocean, retrain_base)` trains the demo ocean into `out`
  (on the shipped base LM where it fits, unless `retrain_base`), registers it and prints its
  skill table; `build-demo` calls it (`--out` default: <home>/demo).
- `serve_app(settings, host, port, address, in_process)` serves the registry `settings`
  names: on Ray Serve (embedded, or joining `address`), or with `in_process` from this
  process without Ray. It refuses (`CommandError`) when no base model is registered, and a
  non-loopback host without `settings.api_key`. It returns when the server stops (Ctrl-C).
- `demo` builds the ocean if missing (fast budget with `--fast`), shows it, routes a few
  held-back paraphrases, then (unless `--no-serve`) calls `serve_app` on its base model.
Each command reads its settings once (`load_settings`) and passes them down.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from composer.cli import render
from composer.cli.common import CommandError, load_settings, open_composer
from composer.cli.render import out
from composer.settings import Settings

if TYPE_CHECKING:
    from registry import Registry

Host = Annotated[str, typer.Option("--host", help="bind address (non-loopback needs COMPOSER_API_KEY)")]
Port = Annotated[int, typer.Option("--port", help="HTTP port")]
Address = Annotated[
    str | None, typer.Option("--address", help="join this Ray cluster", show_default="start a local Ray")
]
Threads = Annotated[
    int | None,
    typer.Option(
        "--threads", help="torch threads per model replica", show_default="$COMPOSER_THREADS, else all cores"
    ),
]


def build(
    registry: Registry,
    out_dir: Path,
    fast: bool,
    seed: int,
    ocean: str | None = None,
    retrain_base: bool = False,
) -> None:
    """Train and register the demo ocean into `out_dir`, then print its skill table."""
    from composer.demo.build import DEFAULT_OCEAN, OCEANS, build_demo

    if ocean is not None and ocean not in OCEANS:
        raise CommandError(f"unknown ocean {ocean!r}: one of {', '.join(OCEANS)}")
    results = build_demo(
        registry, out_dir, fast=fast, seed=seed, ocean=ocean or DEFAULT_OCEAN, retrain_base=retrain_base
    )
    render.skill_table([r.__dict__ for r in results])


def serve_app(settings: Settings, host: str, port: int, address: str | None, in_process: bool) -> None:
    """Serve the registry of `settings` until Ctrl-C (see the module contract)."""
    from ray_cluster.launch import UnsafeBind, examples, is_loopback, serve

    if not settings.registry().list():
        raise CommandError(
            "nothing to serve: the registry is empty (run `composer demo`, "
            "`composer register PATH --kind base --name NAME`, or register endpoint experts: "
            "`composer register --kind endpoint --name NAME --url URL --model MODEL`)"
        )
    settings = dataclasses.replace(settings, home=str(settings.home_dir.resolve()))  # replicas run elsewhere

    def ready(url: str) -> None:
        out.print(
            f"[bold green]Composer is serving at {url}[/bold green]  (OpenAPI: {url}/docs)  Ctrl-C stops.\n"
        )
        reg = settings.registry()
        print(examples(url, _sample_prompt(reg, 0), _sample_prompt(reg, 1)), flush=True)

    if in_process:
        if not is_loopback(host) and not settings.api_key:
            raise CommandError(
                f"refusing to bind {host}: without COMPOSER_API_KEY the server binds loopback only"
            )
        from composer.serving.local import serve_local

        serve_local(settings, host, port, on_ready=ready)
    else:
        try:
            serve(settings, host, port, address, on_ready=ready)
        except UnsafeBind as e:
            raise CommandError(str(e)) from None
    out.print("Composer stopped.")


def _sample_prompt(registry: Registry, i: int) -> str:
    """The first registered example prompt of the `i`-th expert that has examples (for the
    printed curl/CLI examples), else a neutral prompt."""
    prompts = [r.examples[0]["prompt"] for r in registry.list() if r.examples]
    return prompts[i % len(prompts)] if prompts else "Say hello"


def build_demo_cmd(
    ctx: typer.Context,
    fast: Annotated[
        bool, typer.Option("--fast", help="small budget, partly trained experts (tests)")
    ] = False,
    seed: Annotated[int, typer.Option("--seed", help="random seed of the data and the training")] = 0,
    out_dir: Annotated[
        str | None, typer.Option("--out", help="output directory", show_default="$COMPOSER_HOME/demo")
    ] = None,
    ocean: Annotated[
        str | None,
        typer.Option(
            "--ocean",
            help="domains (8 experts over 8 domains with their own vocabularies) or symbols "
            "(8 skills over letters and digits; the test suite's ocean)",
            show_default="domains",
        ),
    ] = None,
    retrain_base: Annotated[
        bool,
        typer.Option(
            "--retrain-base",
            help="train the base LM here even where the shipped one (domains, seed 0) fits",
        ),
    ] = False,
) -> None:
    """Train the demo ocean (base LM + one LoRA expert per skill) and register it."""
    settings = load_settings(ctx)
    out_dir_ = Path(out_dir) if out_dir else settings.home_dir / "demo"
    build(settings.registry(), out_dir_, fast, seed, ocean, retrain_base)


def show_routing(settings: Settings, registry: Registry, demo_dir: Path, base: str) -> None:
    """A few held-back paraphrases (never seen at registration), routed and answered."""
    lines = (demo_dir / "benchmark.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    held_back = [r for r in rows if r["phrasing"] == "held-back"]
    tasks = list(dict.fromkeys(r["task"] for r in held_back))[::2]  # every other skill of the ocean
    picked = [next(r for r in held_back if r["task"] == t) for t in tasks[:4]]
    c = open_composer(settings, registry, base=base)  # the default router, as `model: "composer"` routes
    outs = c.generate([r["prompt"] for r in picked], max_new_tokens=16)
    render.routed_answers(picked, outs, settings.default_router)


def demo(
    ctx: typer.Context,
    fast: Annotated[bool, typer.Option("--fast", help="use the small build budget")] = False,
    no_serve: Annotated[bool, typer.Option("--no-serve", help="show the ocean and exit")] = False,
    host: Host = "127.0.0.1",
    port: Port = 8000,
    address: Address = None,
    threads: Threads = None,
) -> None:
    """Build the demo ocean if missing, show it, then serve it over HTTP (Ctrl-C stops)."""
    from composer.demo.build import BASE_NAME

    settings = load_settings(ctx, threads=threads)
    reg = settings.registry()
    demo_dir = settings.home_dir / "demo"
    report = demo_dir / "report.json"
    if not report.exists() or not any(r.name == BASE_NAME for r in reg.list(kind="base")):
        out.print("[bold]Building the demo ocean[/bold] (first run only) ...")
        build(reg, demo_dir, fast, seed=0)
    else:
        render.skill_table(json.loads(report.read_text())["skills"])
    render.experts_table(reg.list())
    show_routing(settings, reg, demo_dir, BASE_NAME)
    out.print(f"registry: {reg.home}   benchmark: {demo_dir / 'benchmark.jsonl'}")
    a, b = (_sample_prompt(reg, i) for i in (0, 1))
    out.print(f"try: composer route {shlex.quote(a)} --router coe   |  composer generate {shlex.quote(b)}")
    if not no_serve:
        serve_app(dataclasses.replace(settings, base=BASE_NAME), host, port, address, in_process=False)


def serve_cmd(
    ctx: typer.Context,
    host: Host = "127.0.0.1",
    port: Port = 8000,
    address: Address = None,
    threads: Threads = None,
    base: Annotated[
        str | None,
        typer.Option("--base", help="base model of model=composer", show_default="the only one registered"),
    ] = None,
    router: Annotated[
        str | None,
        typer.Option("--router", help="default router", show_default="$COMPOSER_DEFAULT_ROUTER or density"),
    ] = None,
    in_process: Annotated[
        bool, typer.Option("--in-process", help="no Ray: one process serves the same API (one box, dev)")
    ] = False,
) -> None:
    """Serve the registry on Ray Serve: OpenAI-compatible REST API (Ctrl-C stops)."""
    settings = load_settings(ctx, base=base, default_router=router, threads=threads)
    serve_app(settings, host, port, address, in_process)
