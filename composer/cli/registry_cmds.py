"""`composer register` and `composer experts`: put experts into the registry, look, remove.

Contract:
- `register PATH --name NAME [--kind lora|model|base] ...`: a LoRA of a registered `--base`
  and a whole-model expert (`--kind model`; no base model needed) go through
  `Composer.register`, so their routing artifacts (embeddings; LoRA: also PHATGOOSE, Arrow,
  GLIDER, tuned by `--fit-option FITTER.KEY=VALUE`) commit atomically with them. Base models
  and the error cases (no or unknown base, ...) go through `Registry.register`, which words
  the error. Prints one line naming the new record.
- `register --kind endpoint --name NAME --url URL --model M [--api-key-env VAR]`: an endpoint
  expert through `Composer.register_endpoint` (allowlist, addresses, GET /models first).
  `--cost-input/--cost-output` (price per 1M tokens) or `--active-params` give any expert a cost.
- `experts list|show|versions|remove|release|cost [NAME] [--version N] [--kind K] [--json]`:
  `show` says whether the version is quarantined (a host could not load or run it; out of
  routing in every process), `release` lifts that.
Errors propagate (`RegistryError`, `ComposerError`, `RouterError`, `CommandError`): `main`
prints them as one line and exits 1; nothing was changed.
"""

from __future__ import annotations

from typing import Annotated

import typer

from composer.cli.common import (
    CommandError,
    ExpertAction,
    Kind,
    load_examples,
    load_settings,
    open_composer,
    parse_fit_options,
    split_csv,
)
from composer.cli.render import out, print_json, records

JsonFlag = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


def register(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", help="name to register under", show_default=False)],
    path: Annotated[
        str | None,
        typer.Argument(
            metavar="[PATH]",
            help="directory of the model or adapter (PEFT format); none for --kind endpoint",
            show_default=False,
        ),
    ] = None,
    kind: Annotated[Kind, typer.Option("--kind", help="what PATH holds")] = Kind.lora,
    base: Annotated[str | None, typer.Option("--base", help="registered base model (LoRA only)")] = None,
    description: Annotated[str, typer.Option("--description", help="what the expert is good at")] = "",
    tags: Annotated[str, typer.Option("--tags", help="comma-separated")] = "",
    domains: Annotated[str, typer.Option("--domains", help="comma-separated")] = "",
    examples: Annotated[
        str | None,
        typer.Option(
            "--examples", help="example prompts: .jsonl ({prompt, completion}), .json or one per line"
        ),
    ] = None,
    new_version: Annotated[
        bool, typer.Option("--new-version", help="add a version to an existing name")
    ] = False,
    fit_option: Annotated[
        list[str] | None,
        typer.Option(
            "--fit-option",
            metavar="FITTER.KEY=VALUE",
            help="post-hoc fitting option, e.g. phatgoose.steps=200 (LoRA of a registered base); repeatable",
        ),
    ] = None,
    url: Annotated[
        str | None, typer.Option("--url", help="endpoint: OpenAI base URL, e.g. http://127.0.0.1:8000/v1")
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="endpoint: the remote model name")] = None,
    api_key_env: Annotated[
        str | None, typer.Option("--api-key-env", help="endpoint: NAME of the variable holding its key")
    ] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="endpoint: seconds a call may take")] = 30.0,
    cost_input: Annotated[
        float | None, typer.Option("--cost-input", help="price per 1M input tokens")
    ] = None,
    cost_output: Annotated[
        float | None, typer.Option("--cost-output", help="price per 1M output tokens")
    ] = None,
    active_params: Annotated[
        int | None, typer.Option("--active-params", help="parameters active per token (local experts)")
    ] = None,
) -> None:
    """Register a base model, a LoRA adapter, a whole-model expert or an endpoint expert."""
    settings = load_settings(ctx)
    reg = settings.registry()
    meta = {
        "description": description,
        "tags": split_csv(tags),
        "domains": split_csv(domains),
        "examples": load_examples(examples),
        "new_version": new_version,
        "cost": _cost(cost_input, cost_output, active_params),
    }
    if kind is Kind.endpoint:
        if path or not url or not model:
            raise CommandError("--kind endpoint takes --url and --model, and no PATH")
        c = open_composer(settings, reg)
        spec = {"url": url, "model": model, "api_key_env": api_key_env, "timeout_s": timeout}
        rec = c.register_endpoint(name, spec, **meta)
        out.print(f"registered [bold]{rec.name}[/bold] v{rec.version} (endpoint {url}, model {model})")
        return
    if not path:
        raise CommandError(f"--kind {kind.value} needs a PATH")
    kw = {"kind": kind.value, "base": base, **meta}
    bases = [r.name for r in reg.list(kind="base")]
    if kind is Kind.lora and base in bases:
        host_base = base  # through Composer: its post-hoc router artifacts commit with it
    elif kind is Kind.model and base is None:
        # through Composer: routable at once by query-level routers (its embeddings commit with it);
        # embeddings do not depend on the base: any registered one (or none) hosts the fitting
        host_base = settings.base if settings.base in bases else bases[0] if bases else ""
    else:  # base models, and the error cases (no or unknown base, ...) worded by the registry
        host_base = None
    if host_base is None:
        rec = reg.register(path, name, **kw)
    else:
        c = open_composer(settings, reg, base=host_base or None)
        rec = c.register(path, name, fit_options=parse_fit_options(fit_option), **kw)
    out.print(f"registered [bold]{rec.name}[/bold] v{rec.version} ({rec.kind}) digest {rec.digest[:12]}")


def _cost(cost_input: float | None, cost_output: float | None, active_params: int | None) -> dict | None:
    given = {"input_per_1m": cost_input, "output_per_1m": cost_output, "active_params": active_params}
    return {k: v for k, v in given.items() if v is not None} or None


def experts(
    ctx: typer.Context,
    action: Annotated[ExpertAction, typer.Argument(metavar="ACTION", help="what to do", show_default=False)],
    name: Annotated[
        str | None,
        typer.Argument(
            metavar="NAME", help="expert name (show, versions, remove, release)", show_default=False
        ),
    ] = None,
    version: Annotated[
        int | None,
        typer.Option(
            "--version",
            help="one version (show, remove, release); default: the latest (show), all (remove, release)",
        ),
    ] = None,
    kind: Annotated[Kind | None, typer.Option("--kind", help="list only this kind")] = None,
    as_json: JsonFlag = False,
    cost_input: Annotated[
        float | None, typer.Option("--cost-input", help="cost: price per 1M input tokens")
    ] = None,
    cost_output: Annotated[
        float | None, typer.Option("--cost-output", help="cost: price per 1M output tokens")
    ] = None,
    active_params: Annotated[
        int | None, typer.Option("--active-params", help="cost: parameters active per token")
    ] = None,
) -> None:
    """List, show, list versions of, remove, release (from quarantine) experts, or set their cost
    (`cost NAME --cost-input X --cost-output Y`; no option clears it)."""
    reg = load_settings(ctx).registry()
    if action is ExpertAction.list:
        records(reg.list(kind=kind.value if kind else None), as_json)
        return
    if not name:
        raise CommandError(f"experts {action.value} needs a NAME")
    if action is ExpertAction.show:
        rec = reg.get(name, version)
        print_json({**rec.to_dict(), "quarantined": reg.quarantined().get((rec.name, rec.version))})
    elif action is ExpertAction.versions:
        records(reg.versions(name), as_json)
    elif action is ExpertAction.cost:
        rec = reg.set_cost(name, _cost(cost_input, cost_output, active_params), version)
        print_json({"expert": rec.name, "version": rec.version, "cost": rec.config.get("cost")})
    elif action is ExpertAction.release:
        reg.get(name, version)  # NotFoundError for an unknown name or version
        n = reg.release(name, version)
        out.print(f"released {n} quarantined version(s) of {name}" if n else f"{name} is not quarantined")
    else:
        rec = reg.remove(name, version)
        out.print(f"removed {rec.name}" + (f" v{version}" if version else " (all versions)"))
