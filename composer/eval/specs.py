"""What an evaluation runs: routers with configs, and the baselines.

Contract: `RouterSpec(label, kind, router=None, config={}, expert=None)` with kind
"router" (a registered router + config), "base" (the base model alone) or "expert" (one
expert pinned: `expert:NAME`). `parse_specs(text, expert_names)` reads "all" or a
comma-separated list of `name`, `name(key=value, ...)` (values JSON, else strings),
`base`, `expert:NAME`, `experts` (every expert pinned) or `best-single` (= `experts`; the
report then names the best one). "all" = base, oracle, every expert pinned (best single
expert), uniform merge, every other registered router, and GLIDER at alpha 3 (held-out
leaning), alpha 100 (held-in leaning) and alpha 3 with its local gates choosing among the
global top 2 (`global_top=2`: a prompt of two parts keeps both parts' experts). Unknown
names raise `RouterError`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import routers
from routers import RouterError

GLIDER_CONFIGS = ({"alpha": 3.0}, {"alpha": 100.0}, {"alpha": 3.0, "global_top": 2})
_SPEC = re.compile(r"^(?P<name>[a-z0-9_:.-]+)(?:\((?P<args>.*)\))?$")


@dataclass(frozen=True)
class RouterSpec:
    label: str
    kind: str  # router | base | expert
    router: str | None = None
    config: dict = field(default_factory=dict, hash=False)
    expert: str | None = None


def _split(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    return [p for p in [*parts, cur.strip()] if p]


def _config(args: str, where: str) -> dict:
    cfg = {}
    for pair in _split(args):
        key, eq, value = pair.partition("=")
        if not eq:
            raise RouterError(f"{where}: config must be key=value, got {pair!r}")
        try:
            cfg[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            cfg[key.strip()] = value.strip()
    return cfg


def _expert_specs(names: list[str]) -> list[RouterSpec]:
    return [RouterSpec(f"expert:{n}", "expert", expert=n) for n in names]


def _label(name: str, config: dict) -> str:
    return f"{name}({','.join(f'{k}={v:g}' for k, v in config.items())})"


def _all(experts: list[str]) -> list[RouterSpec]:
    specs = [
        RouterSpec("base", "base"),
        RouterSpec("oracle", "router", "oracle"),
        *_expert_specs(experts),
        RouterSpec("uniform", "router", "uniform"),
    ]
    for name in routers.names():
        if name in ("oracle", "uniform"):
            continue
        if name == "glider":
            specs += [RouterSpec(_label("glider", c), "router", "glider", c) for c in GLIDER_CONFIGS]
        else:
            specs.append(RouterSpec(name, "router", name))
    return specs


def parse_specs(text: str | list[str], experts: list[str]) -> list[RouterSpec]:
    items = _split(text) if isinstance(text, str) else list(text)
    if items == ["all"]:
        return _all(experts)
    specs: list[RouterSpec] = []
    for item in items:
        m = _SPEC.match(item.strip())
        if not m:
            raise RouterError(f"cannot read router spec {item!r} (expected name or name(key=value, ...))")
        name, args = m["name"], m["args"]
        if name == "base":
            specs.append(RouterSpec("base", "base"))
        elif name in ("experts", "best-single"):
            specs += _expert_specs(experts)
        elif name.startswith("expert:"):
            if name[7:] not in experts:
                raise RouterError(f"unknown expert {name[7:]!r}; known: {', '.join(experts)}")
            specs.append(RouterSpec(name, "expert", expert=name[7:]))
        else:
            config = _config(args, item) if args else {}
            routers.parse_config(name, **config)  # unknown router or bad config: RouterError now
            specs.append(RouterSpec(item.strip().replace(" ", ""), "router", name, config))
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise RouterError(
            f"router specs repeat: {', '.join(sorted({x for x in labels if labels.count(x) > 1}))}"
        )
    return specs
