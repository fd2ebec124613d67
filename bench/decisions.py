"""Where a token router's decisions go, from its token reports (`composer.introspect`): at
the prompt's tokens and at the positions that write the gold answer, per prompt skill, and
per part of a two-domain composition. Used by `bench/token_routing.py`.

- `gold_reports(c, tok, rows, router, config)`: each prompt followed by its gold answer,
  teacher-forced, routed on the prompt alone (a token router's choice at a position depends
  only on the tokens so far, so these are the choices a right answer meets).
- `owners(report, row, writing)`: per position, the skill that owns it, or None. Reading
  positions are the prompt's, before the one that writes the first answer token; writing
  positions write an answer token. On a composition, the part's skill, split at `;`.
- `zones(...)`: the own expert's first share at reading and at writing positions (mean over
  prompts), and per prompt the experts' first shares at writing positions.
- `by_domain`, `plot_by_domain`: prompt skill x expert ranked first, as grids and heat-maps;
  `plot_composition`: one composition's token x expert weights, prompt and answer.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path


def gold_reports(c, tok, rows: list[dict], router: str, config: dict) -> list[dict]:
    """Token reports of each prompt followed by its gold answer (teacher forcing), routed on
    the prompt alone as in generation; a token router's choice at a position depends only on
    the tokens up to it, so these are the choices generating the right answer would meet."""
    plans = c.route([r["prompt"] for r in rows], router, **config)

    def render(prompt: str) -> str:
        messages = [{"role": "user", "content": prompt}]
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    out = []
    for plan, r in zip(plans, rows):
        prompt = render(r["prompt"])
        rep = c.executor.trace(prompt + r["answer"], plan, chat=False)
        out.append({**rep, "answer_from": len(tok(prompt, add_special_tokens=False)["input_ids"]) - 1})
    return out


def owners(rep: dict, row: dict, writing: bool) -> list[str | None]:
    """Per position, the skill that owns it (None: not counted). Reading positions are the
    prompt's, before the one writing the first answer token; writing positions write an answer
    token (the last position writes nothing). On a composition the owner is the skill of the
    part a position reads or writes, split at the prompt's or the answer's `;`."""
    n, start = len(rep["tokens"]), rep["answer_from"]
    semis = [i for i, t in enumerate(rep["tokens"]) if t.strip() == ";"]
    out: list[str | None] = []
    for t in range(n):
        mine = start <= t < n - 1 if writing else t < start
        if not mine or not row.get("skills") or len(row["skills"]) < 2:
            out.append(row["task"] if mine else None)
            continue
        read = t + 1 if writing else t
        cut = next((i for i in semis if (i > start) == writing), None)
        out.append(None if cut is None or read == cut else row["skills"][read > cut])
    return out


def firsts(rep: dict, owner: list[str | None]) -> tuple[int, int, dict[str, float]]:
    """Over the (token, module) decisions at owned positions: how many put the owner first,
    how many there are, and each expert's share of being first."""
    hit = n = 0
    first: dict[str, float] = defaultdict(float)
    for per_token in rep["modules"].values():
        for t, kept in enumerate(per_token):
            if kept and owner[t]:
                hit += kept[0][0] == owner[t]
                n += 1
                first[kept[0][0]] += 1
    return hit, n, {e: v / max(n, 1) for e, v in first.items()}


def zones(c, tok, rows: list[dict], router: str, config: dict) -> tuple[dict, list[dict]]:
    """Own expert first at reading and at writing positions, as a mean over prompts of each
    prompt's share (like `own_top1`), and per row the experts' first shares at writing positions."""
    own, shares = defaultdict(list), []
    for rep, r in zip(gold_reports(c, tok, rows, router, config), rows):
        hit, n, _ = firsts(rep, owners(rep, r, writing=False))
        own[False] += [hit / n] if n else []
        hit, n, first = firsts(rep, owners(rep, r, writing=True))
        own[True] += [hit / n] if n else []
        shares.append(first)
    return {w: sum(v) / len(v) for w, v in own.items()}, shares


def by_domain(
    shares: list[dict[str, float]], rows: list[dict], names: list[str]
) -> dict[str, dict[str, float]]:
    """Per skill of the prompt, each expert's share of the (token, module) top-1 decisions,
    averaged over that skill's prompts (each prompt counts once, like `own_top1`)."""
    grid: dict[str, dict[str, float]] = defaultdict(lambda: dict.fromkeys(names, 0.0))
    count: dict[str, int] = defaultdict(int)
    for share, r in zip(shares, rows):
        count[r["task"]] += 1
        for e, v in share.items():
            grid[r["task"]][e] += v
    return {t: {e: round(v / count[t], 4) for e, v in grid[t].items()} for t in sorted(grid)}


def plot_by_domain(grids: dict[str, dict[str, dict[str, dict[str, float]]]], path: Path) -> None:
    """One heat-map per router and kind of position: rows the prompt's skill, columns the
    expert ranked first."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(next(iter(grids.values())))
    fig, axes = plt.subplots(
        len(kinds),
        len(grids),
        figsize=(3.4 * len(grids), 3.6 * len(kinds)),
        squeeze=False,
        sharex=True,
        sharey=True,
    )
    for j, (router, per_kind) in enumerate(grids.items()):
        for i, (kind, grid) in enumerate(per_kind.items()):
            ax, tasks = axes[i][j], list(grid)
            experts = list(grid[tasks[0]])
            own = sum(grid[t].get(t, 0.0) for t in tasks) / len(tasks)
            im = ax.imshow([[grid[t][e] for e in experts] for t in tasks], cmap="viridis", vmin=0, vmax=0.8)
            ax.set_xticks(range(len(experts)), experts, rotation=60, ha="right", fontsize=8)
            ax.set_yticks(range(len(tasks)), tasks, fontsize=8)
            ax.set_title(f"{router}, {kind}:\nown first {own:.0%}", fontsize=9)
        axes[-1][j].set_xlabel("expert ranked first")
    for i in range(len(kinds)):
        axes[i][0].set_ylabel("prompt's skill")
    fig.colorbar(im, ax=axes.ravel().tolist(), label="share of (token, module) decisions", shrink=0.6)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote {path}")


def plot_composition(c, tok, row: dict, routers: dict[str, tuple[str, dict]], path: Path) -> None:
    """One composition, prompt and gold answer, under each router: token x expert weight
    (mean over modules), one panel per router, the two parts' experts named in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from composer.introspect import token_weights

    fig, axes = plt.subplots(len(routers), 1, figsize=(12, 3.2 * len(routers)), squeeze=False)
    for ax, (label, (router, config)) in zip(axes[:, 0], routers.items()):
        rep = gold_reports(c, tok, [row], router, config)[0]
        experts, grid = token_weights(rep)
        tokens = [t.replace("\n", "\\n") for t in rep["tokens"]]
        im = ax.imshow(list(map(list, zip(*grid))), cmap="viridis", vmin=0, vmax=1, aspect="auto")
        ax.axvline(rep["answer_from"] + 0.5, color="white", lw=1)  # the answer starts after it
        ax.set_xticks(range(len(tokens)), tokens, rotation=70, ha="right", fontsize=7)
        ax.set_yticks(range(len(experts)), experts, fontsize=8)
        ax.set_title(f"{label}: {' then '.join(row['skills'])} (the answer right of the line)", fontsize=9)
    fig.colorbar(im, ax=axes.ravel().tolist(), label="mean weight over modules", shrink=0.6)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote {path}")
