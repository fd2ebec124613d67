"""The `composer` command line (also `python -m composer`).

Contract: each sub-command is a function registered with `@command(name, help, *args)`;
`main(argv)` parses, runs it and returns the exit code. A `RegistryError` or
`CommandError` becomes one line on stderr (`composer: error: ...`) and exit code 1, with
nothing changed; argparse usage errors exit 2. Heavy imports (torch, the demo trainer)
happen inside the commands, so `composer --help` is instant.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.table import Table

from composer.settings import Settings
from registry import Registry, RegistryError

out = Console()
_COMMANDS: dict[str, tuple[str, tuple, Callable]] = {}


class CommandError(Exception):
    """A user-facing failure of a command; its message is printed as is."""


def arg(*names, **kw) -> tuple:
    return names, kw


def command(name: str, help: str, *args: tuple):
    def deco(fn):
        _COMMANDS[name] = (help, args, fn)
        return fn
    return deco


def _registry(a) -> Registry:
    return Settings.from_env(home=a.home).registry()


def demo_dir(a) -> Path:
    """Where the demo ocean is built: --out, else <registry home>/demo (no database opened)."""
    if getattr(a, "out", None):
        return Path(a.out)
    return Settings.from_env(home=a.home).home_dir / "demo"


def _load_examples(path: str | None) -> list:
    if not path:
        return []
    p = Path(path)
    if not p.is_file():
        raise CommandError(f"examples file not found: {p}")
    text = p.read_text()
    if p.suffix == ".json":
        return json.loads(text)
    if p.suffix == ".jsonl":
        rows = []
        for i, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise CommandError(f"{p}:{i}: not valid JSON ({e.msg})") from None
        return rows
    return [line.strip() for line in text.splitlines() if line.strip()]


_SERVE_ARGS = (arg("--host", default="127.0.0.1", help="bind address (non-loopback needs COMPOSER_API_KEY)"),
               arg("--port", type=int, default=8000),
               arg("--address", help="join this Ray cluster (default: start a local Ray)"),
               arg("--threads", type=int, help="torch threads per model replica (default: all cores)"))


@command("build-demo", "train the demo ocean (base LM + one LoRA expert per skill) and register it",
         arg("--fast", action="store_true", help="small budget (tests): < 2 minutes"),
         arg("--seed", type=int, default=0),
         arg("--out", help="output directory (default: $COMPOSER_HOME/demo)"))
def cmd_build_demo(a) -> int:
    from composer.demo.build import build_demo
    results = build_demo(_registry(a), demo_dir(a), fast=a.fast, seed=a.seed)
    _print_skill_table([r.__dict__ for r in results])
    return 0


def _print_skill_table(rows: list[dict]) -> None:
    t = Table(title="Demo ocean on held-in prompts: exact match, and teacher-forced answer-token accuracy")
    for col in ("skill", "domain", "LoRA", "base", "expert", "base tok", "expert tok"):
        t.add_column(col, justify="left" if col in ("skill", "domain", "LoRA") else "right")
    for r in rows:
        t.add_row(r["skill"], r["domain"], r["lora"], *(f"{r[k]:.1%}" for k in
                                                         ("base_acc", "expert_acc", "base_tok", "expert_tok")))
    out.print(t)


@command("demo", "build the demo ocean if missing, show it, then serve it over HTTP (Ctrl-C stops)",
         arg("--fast", action="store_true", help="use the small build budget"),
         arg("--no-serve", action="store_true", help="show the ocean and exit"),
         *_SERVE_ARGS)
def cmd_demo(a) -> int:
    from composer.demo.build import BASE_NAME
    reg = _registry(a)
    report = demo_dir(a) / "report.json"
    if not report.exists() or not any(r.name == BASE_NAME for r in reg.list(kind="base")):
        out.print("[bold]Building the demo ocean[/bold] (first run only) ...")
        cmd_build_demo(argparse.Namespace(**{**vars(a), "seed": 0, "out": None}))
    else:
        _print_skill_table(json.loads(report.read_text())["skills"])
    _print_experts(reg.list())
    _show_routing(a)
    out.print(f"registry: {reg.home}   benchmark: {demo_dir(a) / 'benchmark.jsonl'}")
    out.print('try: composer route "Write these letters backwards: c a t" --router coe   '
              '|  composer generate "Count down from 5"')
    if a.no_serve:
        return 0
    a.base = BASE_NAME
    return cmd_serve(a)


def _show_routing(a) -> None:
    """A few held-back paraphrases (never seen at registration), routed and answered."""
    from composer.demo.build import BASE_NAME
    rows = [json.loads(line) for line in (demo_dir(a) / "benchmark.jsonl").read_text().splitlines()]
    picked = [next(r for r in rows if r["task"] == t and r["phrasing"] == "held-back")
              for t in ("reverse", "add", "max", "countdown")]
    with _composer(argparse.Namespace(home=a.home, base=BASE_NAME, router="retrieval")) as c:
        outs = c.generate([r["prompt"] for r in picked], max_new_tokens=16)
    t = Table(title="Routed generation on held-back paraphrases (router: retrieval)")
    for col in ("prompt", "expert", "answer", "expected"):
        t.add_column(col)
    for r, o in zip(picked, outs):
        t.add_row(r["prompt"], ", ".join(o.plan.experts) or "(base)", o.text, r["answer"])
    out.print(t)


@command("serve", "serve the registry on Ray Serve: OpenAI-compatible REST API (Ctrl-C stops)", *_SERVE_ARGS,
         arg("--base", help="base model of model=composer (default: the only one registered)"),
         arg("--router", help="default router (default: $COMPOSER_DEFAULT_ROUTER or retrieval)"),
         arg("--in-process", action="store_true", help="no Ray: one process serves the same API (one box, dev)"))
def cmd_serve(a) -> int:
    from ray_cluster.launch import UnsafeBind, examples, is_loopback, serve
    reg = _registry(a)
    if not reg.list(kind="base"):
        raise CommandError("nothing to serve: no base model is registered (run `composer demo` or "
                           "`composer register PATH --kind base --name NAME`)")
    settings = Settings.from_env(home=str(reg.home.resolve()), base=getattr(a, "base", None),
                                 default_router=getattr(a, "router", None), threads=a.threads)

    def ready(url: str) -> None:
        out.print(f"[bold green]Composer is serving at {url}[/bold green]  (OpenAPI: {url}/docs)  Ctrl-C stops.\n")
        print(examples(url), flush=True)

    if getattr(a, "in_process", False):
        if not is_loopback(a.host) and not settings.api_key:
            raise CommandError(f"refusing to bind {a.host}: without COMPOSER_API_KEY the server binds loopback only")
        from composer.serving.local import serve_local
        serve_local(settings, a.host, a.port, on_ready=ready)
        out.print("Composer stopped.")
        return 0
    try:
        serve(settings, a.host, a.port, a.address, on_ready=ready)
    except UnsafeBind as e:
        raise CommandError(str(e)) from None
    out.print("Composer stopped.")
    return 0


@command("register", "register a base model, a LoRA adapter or a whole-model expert",
         arg("path"), arg("--name", required=True), arg("--kind", choices=["lora", "model", "base"], default="lora"),
         arg("--base", help="registered base model (LoRA only)"), arg("--description", default=""),
         arg("--tags", default="", help="comma-separated"), arg("--domains", default="", help="comma-separated"),
         arg("--examples", help="example prompts: .jsonl ({prompt, completion}), .json or one per line"),
         arg("--new-version", action="store_true", help="add a version to an existing name"),
         arg("--fit-option", action="append", default=[], metavar="FITTER.KEY=VALUE",
             help="post-hoc fitting option, e.g. phatgoose.steps=200 (LoRA of a registered base)"))
def cmd_register(a) -> int:
    split = (lambda s: [x.strip() for x in s.split(",") if x.strip()])
    kw = {"kind": a.kind, "base": a.base, "description": a.description, "tags": split(a.tags),
          "domains": split(a.domains), "examples": _load_examples(a.examples), "new_version": a.new_version}
    reg = _registry(a)
    if a.kind == "lora" and any(r.name == a.base for r in reg.list(kind="base")):
        a.router = None  # registered through Composer: its post-hoc router artifacts commit with it
        fit_options: dict[str, dict] = {}
        for key, value in _config(a.fit_option).items():
            fitter, _, opt = key.partition(".")
            if not opt:
                raise CommandError(f"fit option {key!r} must be FITTER.KEY=VALUE (e.g. phatgoose.steps=200)")
            fit_options.setdefault(fitter, {})[opt] = value
        with _composer(a) as c:
            rec = c.register(a.path, a.name, fit_options=fit_options, **kw)
    else:  # base/model experts, and LoRA errors (no or unknown base) worded by the registry
        rec = reg.register(a.path, a.name, **kw)
    out.print(f"registered [bold]{rec.name}[/bold] v{rec.version} ({rec.kind}) digest {rec.digest[:12]}")
    return 0


def _print_experts(recs) -> None:
    t = Table(title="Registry")
    for col in ("name", "ver", "kind", "base", "domains", "description"):
        t.add_column(col)
    for r in recs:
        t.add_row(r.name, str(r.version), r.kind, r.base_model or "", ",".join(r.domains), r.description[:60])
    out.print(t)


@command("experts", "list, show, list versions of, or remove registered experts",
         arg("action", choices=["list", "show", "versions", "remove"]), arg("name", nargs="?"),
         arg("--version", type=int), arg("--kind", choices=["lora", "model", "base"]),
         arg("--json", action="store_true"))
def cmd_experts(a) -> int:
    reg = _registry(a)
    if a.action == "list":
        recs = reg.list(kind=a.kind)
        if a.json:
            print(json.dumps([r.to_dict() for r in recs], indent=2))
        else:
            _print_experts(recs)
        return 0
    if not a.name:
        raise CommandError(f"experts {a.action} needs a NAME")
    if a.action == "show":
        print(json.dumps(reg.get(a.name, a.version).to_dict(), indent=2))
    elif a.action == "versions":
        recs = reg.versions(a.name)
        if a.json:
            print(json.dumps([r.to_dict() for r in recs], indent=2))
        else:
            _print_experts(recs)
    else:
        rec = reg.remove(a.name, a.version)
        out.print(f"removed {rec.name}" + (f" v{a.version}" if a.version else " (all versions)"))
    return 0


def _config(pairs: list[str]) -> dict:
    """`-c top_k=2 -c experts='["a","b"]'` -> {"top_k": 2, "experts": ["a", "b"]} (JSON values, else strings)."""
    cfg = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise CommandError(f"config must be KEY=VALUE, got {pair!r}")
        try:
            cfg[key] = json.loads(value)
        except json.JSONDecodeError:
            cfg[key] = value
    return cfg


@contextmanager
def _composer(a):
    """A Composer on the registry; router/composer errors become one-line CLI errors."""
    from composer.api import Composer, ComposerError
    from routers import RouterError
    try:
        yield Composer(_registry(a), base=getattr(a, "base", None), default_router=getattr(a, "router", None))
    except (RouterError, ComposerError) as e:
        raise CommandError(str(e)) from None


_ROUTE_ARGS = (arg("prompt", nargs="+", help="one or more prompts (served as one batch)"),
               arg("--router", help="router name (default: $COMPOSER_DEFAULT_ROUTER or retrieval)"),
               arg("-c", "--config", action="append", default=[], metavar="KEY=VALUE", help="router config"),
               arg("--base", help="base model (default: the only one registered)"),
               arg("--json", action="store_true"))


@command("route", "show which experts a router picks for each prompt, and why", *_ROUTE_ARGS)
def cmd_route(a) -> int:
    with _composer(a) as c:
        reports = c.inspect(a.prompt, **_config(a.config))  # plans, plus per-token choices for token routers
    if a.json:
        print(json.dumps(reports, indent=2))
        return 0
    for r in reports:
        weights = ", ".join(f"{e} {w:.2f}" for e, w in zip(r["experts"], r["weights"])) or "(base model)"
        if r["mode"] == "token":
            weights = f"per token among {len(r['experts'])} experts"
        out.print(f"[bold]{r['prompt']}[/bold]\n  {r['router']} -> {r['mode']}: {weights}\n  {r['explanation']}")
        if r["per_token"]:
            _print_layers(r["per_token"])
    return 0


def _print_layers(report: dict) -> None:
    layers = list(report["layers"])
    t = Table(title="share of routing weight per layer (all modules, all prompt tokens)")
    t.add_column("expert")
    for layer in layers:
        t.add_column(layer.rsplit(".", 1)[-1], justify="right")
    t.add_column("top-1", justify="right")
    for e in report["top1"]:
        t.add_row(e, *(f"{report['layers'][la].get(e, 0):.2f}" for la in layers), f"{report['top1'][e]:.2f}")
    out.print(t)


@command("generate", "route each prompt and generate (or pin one expert with --expert)", *_ROUTE_ARGS,
         arg("--expert", help="serve this expert (or the base model's name), no routing"),
         arg("--max-new-tokens", type=int, default=32), arg("--temperature", type=float, default=0.0))
def cmd_generate(a) -> int:
    with _composer(a) as c:
        if a.expert and (a.router or a.config):
            raise CommandError("give either --expert or --router/--config, not both")
        outs = c.generate(a.prompt, router=None if a.expert else a.router, expert=a.expert,
                          max_new_tokens=a.max_new_tokens, temperature=a.temperature, **_config(a.config))
    if a.json:
        print(json.dumps([o.to_dict() for o in outs], indent=2))
        return 0
    for prompt, o in zip(a.prompt, outs):
        out.print(f"[bold]{prompt}[/bold]\n  {o.text}\n  [dim]{o.plan.router}: {o.plan.explanation}[/dim]")
    return 0


@command("routers", "list the routers and their config schemas", arg("--json", action="store_true"))
def cmd_routers(a) -> int:
    import routers
    schemas = routers.schemas()
    if a.json:
        print(json.dumps(schemas, indent=2))
        return 0
    t = Table(title="Routers")
    for col in ("name", "what it does", "config (default)"):
        t.add_column(col)
    for name, s in schemas.items():
        props = s["config"].get("properties", {})
        t.add_row(name, s["description"], ", ".join(f"{k}={v.get('default')}" for k, v in props.items()))
    out.print(t)
    return 0


@command("eval", "evaluate routers side by side over a benchmark: results.json, report.md and plots in --out",
         arg("--benchmark", default="demo", help="'demo' (the demo ocean's benchmark.jsonl) or a JSONL file"),
         arg("--routers", default="all", help="'all', or a comma list: retrieval, glider(alpha=100), base, "
                                              "expert:NAME, experts, ..."),
         arg("--limit", type=int, help="examples per split (round-robin over tasks)"),
         arg("--out", default="eval-out", help="output directory"),
         arg("--max-new-tokens", type=int, default=32),
         arg("--cache", help="output cache file (default: $COMPOSER_HOME/eval-cache.sqlite)"),
         arg("--no-cache", action="store_true", help="neither read nor write the output cache"),
         arg("--ray", action="store_true", help="run shards on Ray actors (default: in this process)"),
         arg("--workers", type=int, default=2, help="Ray actors (with --ray)"),
         arg("--base"))
def cmd_eval(a) -> int:
    from composer.eval import BenchmarkError, load_benchmark, parse_specs, write_report
    from composer.eval.cache import OutputCache
    from composer.eval.report import main_rows
    reg = _registry(a)
    try:
        examples = load_benchmark(a.benchmark, reg, a.limit)
    except BenchmarkError as e:
        raise CommandError(str(e)) from None
    cache_path = Path(a.cache) if a.cache else reg.home / "eval-cache.sqlite"
    settings = {"max_new_tokens": a.max_new_tokens}
    a.router = None
    with _composer(a) as c:
        specs = parse_specs(a.routers, [r.name for r in c.experts()])
        if a.ray:
            from ray_cluster.eval import evaluate_on_ray
            run = evaluate_on_ray(str(reg.home.resolve()), c.base, examples, specs, settings,
                                  None if a.no_cache else str(cache_path), a.workers, benchmark=a.benchmark)
        else:
            from composer.eval import evaluate
            run = evaluate(c, examples, specs, settings, None if a.no_cache else OutputCache(cache_path),
                           benchmark=a.benchmark)
    rows = write_report(run, a.out, command="composer " + " ".join(sys.argv[1:]) if sys.argv[1:] else "")
    t = Table(title=f"{a.benchmark}: {len(examples)} examples ({run.generated} executed, {run.cached} cached)")
    for col in ("router", "held-in", "held-out", "overall", "oracle agr.", "experts/req"):
        t.add_column(col, justify="left" if col == "router" else "right")
    pct = (lambda v: "n/a" if v is None else f"{v:.1%}")
    for r in main_rows(rows):
        t.add_row(r["router"], pct(r["held_in"]), pct(r["held_out"]), pct(r["overall"]), pct(r["oracle_agreement"]),
                  f"{r['experts_per_request']:.2f}")
    out.print(t)
    out.print(f"wrote {Path(a.out) / 'report.md'}, results.json and plots")
    return 0


def _from_eval(path: str, by: str) -> tuple[list[dict], list[dict]]:
    """(labelled prompts, per-expert results) from an evaluation's results.json."""
    f = Path(path) / "results.json" if Path(path).is_dir() else Path(path)
    if not f.is_file():
        raise CommandError(f"no evaluation results at {f} (run `composer eval --out DIR` first)")
    records = json.loads(f.read_text())["records"]
    label = (lambda r: r["task"]) if by == "task" else (lambda r: r.get("category") or r["task"])
    results = [{"prompt": r["prompt"], "expert": r["router"][7:], "score": float(r["correct"]), "category": label(r)}
               for r in records if r["router"].startswith("expert:")]
    if not results:
        raise CommandError("the evaluation has no pinned-expert runs to fit from: run `composer eval` with "
                           "--routers all (or experts)")
    rows = list({r["prompt"]: {"prompt": r["prompt"], "category": r["category"]} for r in results}.values())
    return rows, results


def _load_json(path: str | None, what: str):
    if path is None:
        return None
    rows = _load_examples(path)
    if path.endswith(".txt") or (rows and isinstance(rows, list) and isinstance(rows[0], str)):
        raise CommandError(f"{what} must be .json or .jsonl")
    return rows


@command("fit", "fit a router trained over all experts (coe, bench_coe) and store it in the registry",
         arg("router", choices=["coe", "bench_coe"]),
         arg("--data", help="coe: labelled prompts .jsonl ({prompt, category}); default: registered examples"),
         arg("--map", help="coe: category -> expert .json"),
         arg("--results", help="evaluation results .jsonl ({prompt, expert, score, category}); bench_coe "
                               "default: score every expert on the registered examples"),
         arg("--by", choices=["expert", "domain"], default="expert", help="coe: default labels"),
         arg("--level", choices=["query", "subject"], default="query", help="bench_coe"),
         arg("--from-eval", metavar="DIR", help="fit from `composer eval` results: per-category best expert (coe), "
                                                "per-query correctness of every expert (bench_coe)"),
         arg("--category", choices=["task", "category"], default="task",
             help="with --from-eval: what a category is (the benchmark's task, or its category field)"),
         arg("--base"))
def cmd_fit(a) -> int:
    a.router_name, a.router = a.router, None
    kw = {"results": _load_json(a.results, "--results")}
    if a.from_eval:
        if a.results or a.data or a.map:
            raise CommandError("--from-eval replaces --data, --map and --results")
        rows, kw["results"] = _from_eval(a.from_eval, a.category)
        if a.router_name == "coe":
            kw["rows"] = rows
    if a.router_name == "coe":
        kw.setdefault("rows", _load_json(a.data, "--data"))
        kw.update(expert_map=_load_json(a.map, "--map"), by=a.by)
    else:
        kw.update(level=a.level)
    with _composer(a) as c:
        summary = c.fit(a.router_name, **kw)
    print(json.dumps(summary, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="composer", description="Composer: compose specialised experts.")
    p.add_argument("--home", default=None, help="registry home (default: $COMPOSER_HOME or ~/.composer)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_, args, fn) in _COMMANDS.items():
        sp = sub.add_parser(name, help=help_, description=help_)
        for names, kw in args:
            sp.add_argument(*names, **kw)
        sp.set_defaults(fn=fn)
    return p


def _quiet_libraries() -> None:
    """Library deprecation chatter and per-file load bars are noise on a terminal."""
    warnings.filterwarnings("ignore", category=FutureWarning)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from transformers.utils import logging as hf_logging
        hf_logging.disable_progress_bar()
    except ImportError:
        pass


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is ever downloaded at run time
    a = build_parser().parse_args(argv)  # --help exits here, before any heavy import
    _quiet_libraries()
    from composer.progress import set_quiet
    set_quiet(Settings.from_env().quiet)
    try:
        return a.fn(a)
    except (RegistryError, CommandError) as e:
        print(f"composer: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("composer: interrupted", file=sys.stderr)
        return 130
