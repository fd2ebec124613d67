"""What every `composer` command shares: the global options, settings, and argument parsing.

Contract:
- `Globals` is the root context's `obj`: `home` (the global `--home`, None: $COMPOSER_HOME)
  and `argv` (the arguments `main` ran with, for reports that say how to reproduce them).
- `load_settings(ctx, **overrides)` is the one read of the environment per command:
  `Settings.from_env(home=<--home>, **overrides)`, then `set_quiet(settings.quiet)`.
- `open_composer(settings, registry=None, base=None)` builds a `Composer` on those settings
  (torch loads here, never at import).
- `CommandError` is a user-facing failure: `main` prints it as one line and exits 1.
  `parse_config`, `parse_fit_options`, `split_csv`, `load_examples` and `load_json` raise it
  for malformed input.
- The `Enum`s are the typed choices of the command line (`--kind`, `experts ACTION`, ...).
Nothing heavy is imported at module level: `composer --help` stays instant.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from composer.progress import set_quiet
from composer.settings import Settings

if TYPE_CHECKING:
    from composer.api import Composer
    from registry import Registry


class CommandError(Exception):
    """A user-facing failure of a command; its message is printed as is."""


@dataclass
class Globals:
    home: str | None = None
    argv: list[str] = field(default_factory=list)


class Kind(str, Enum):
    lora = "lora"
    model = "model"
    base = "base"
    endpoint = "endpoint"


class ExpertAction(str, Enum):
    list = "list"
    show = "show"
    versions = "versions"
    remove = "remove"
    release = "release"
    cost = "cost"


class FitBy(str, Enum):
    expert = "expert"
    domain = "domain"


class Level(str, Enum):
    query = "query"
    subject = "subject"


class CategoryField(str, Enum):
    task = "task"
    category = "category"


def globals_of(ctx: typer.Context) -> Globals:
    obj = ctx.find_object(Globals)
    return obj if obj is not None else Globals()


def load_settings(ctx: typer.Context, **overrides) -> Settings:
    """The command's settings: the environment, `--home` and `overrides` (None: unset)."""
    settings = Settings.from_env(home=globals_of(ctx).home, **overrides)
    set_quiet(settings.quiet)
    return settings


def open_composer(settings: Settings, registry: Registry | None = None, base: str | None = None) -> Composer:
    """A Composer on the settings' registry (or `registry`); `base` overrides `settings.base`."""
    from composer.api import Composer

    return Composer(registry or settings.registry(), base=base, settings=settings)


def split_csv(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def parse_config(pairs: list[str] | None) -> dict:
    """`-c top_k=2 -c experts='["a","b"]'` -> {"top_k": 2, "experts": ["a", "b"]}.

    Values are JSON where they parse, else strings."""
    cfg = {}
    for pair in pairs or []:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise CommandError(f"config must be KEY=VALUE, got {pair!r}")
        try:
            cfg[key] = json.loads(value)
        except json.JSONDecodeError:
            cfg[key] = value
    return cfg


def parse_fit_options(pairs: list[str] | None) -> dict[str, dict]:
    """`--fit-option phatgoose.steps=200` -> {"phatgoose": {"steps": 200}}."""
    options: dict[str, dict] = {}
    for key, value in parse_config(pairs).items():
        fitter, _, opt = key.partition(".")
        if not opt:
            raise CommandError(f"fit option {key!r} must be FITTER.KEY=VALUE (e.g. phatgoose.steps=200)")
        options.setdefault(fitter, {})[opt] = value
    return options


def load_examples(path: str | None) -> list:
    """Example prompts from .jsonl (one object a line), .json, or any other file (one prompt a line)."""
    if not path:
        return []
    p = Path(path)
    if not p.is_file():
        raise CommandError(f"examples file not found: {p}")
    text = p.read_text()
    if p.suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise CommandError(f"{p}: not valid JSON ({e.msg})") from None
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


def load_json(path: str | None, what: str):
    """Rows of a .json or .jsonl file given as option `what`; None when no file is given."""
    if path is None:
        return None
    rows = load_examples(path)
    if path.endswith(".txt") or (rows and isinstance(rows, list) and isinstance(rows[0], str)):
        raise CommandError(f"{what} must be .json or .jsonl")
    return rows
