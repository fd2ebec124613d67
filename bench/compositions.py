"""Two-domain compositions on a demo ocean: which part of the answer each way of mixing gets right.

A composition prompt needs two experts, one per part ("{A}: x ; then {b}: y" -> "a(x) ; b(y)").
For every ordered pair of its benchmark's compositions this runs, greedy, the first expert
alone and the second alone (the best a one-expert query router can do), the uniform merge,
and every token router (PHATGOOSE, Arrow, SpectR, hidden, GLIDER at the held-out alpha 3) — once
over all experts (what `composer eval` measures) and once restricted to the pair's two
experts (`experts=[a, b]`: the token gates only have to tell the two parts apart) — plus
GLIDER whose local gates choose among its own global top 2 (`global_top=2`, over all
experts; alpha 3, and 10 and 0 beside it), and reports exact match and the share of first
and second parts right.
Target (issue 18): the best token router over all experts >= uniform and >= the best single
expert + 10 points.

    python bench/compositions.py --home H   # a `composer build-demo --ocean domains` home
"""

from __future__ import annotations

from collections import defaultdict

from common import args, demo_benchmark, demo_home, write

TOKEN = {"phatgoose": {}, "arrow": {}, "spectr": {}, "hidden": {}, "glider": {"alpha": 3.0}}
SHORTLISTED = {f"glider (alpha {a:g}, global top 2)": {"alpha": a, "global_top": 2} for a in (3.0, 10.0, 0.0)}
JUDGED = [*TOKEN, "glider (alpha 3, global top 2)"]  # set before measuring; alpha 10 and 0: the sweep


def pairs(home, per_pair: int, limit: int | None) -> dict[tuple[str, str], list[dict]]:
    rows = demo_benchmark(home)
    by = defaultdict(list)
    for r in rows:
        if r["phrasing"] == "composition" and len(by[tuple(r["skills"])]) < per_pair:
            by[tuple(r["skills"])].append(r)
    return dict(list(by.items())[:limit])


def configs(a: str, b: str) -> dict[str, dict]:
    """name -> Composer.generate keyword arguments, for the pair (a, b)."""
    out = {"expert A": {"expert": a}, "expert B": {"expert": b}, "uniform": {"router": "uniform"}}
    out["uniform (pair)"] = {"router": "uniform", "experts": [a, b]}
    for name, cfg in TOKEN.items():
        out[name] = {"router": name, **cfg}
        out[f"{name} (pair)"] = {"router": name, "experts": [a, b], **cfg}
    for name, cfg in SHORTLISTED.items():
        out[name] = {"router": "glider", **cfg}
    return out


def parts(text: str) -> list[str]:
    return [" ".join(p.split()) for p in text.split(";")]


def main() -> None:
    a = args(__doc__.splitlines()[0], home={"default": None}, per_pair={"type": int, "default": 3})
    from composer import Composer
    from registry import Registry

    home = demo_home(a.home)
    c = Composer(Registry(home=home))
    tally = defaultdict(lambda: [0, 0, 0, 0])  # exact, first part, second part, n
    for (x, y), rows in pairs(home, 1 if a.smoke else a.per_pair, 2 if a.smoke else None).items():
        prompts = [r["prompt"] for r in rows]
        for name, kw in configs(x, y).items():
            for r, out in zip(rows, c.generate(prompts, max_new_tokens=24, **kw)):
                got, want = parts(out.text), parts(r["answer"])
                t = tally[name]
                t[0] += got == want
                t[1] += got[0] == want[0]
                t[2] += len(want) > 1 and len(got) > 1 and got[1] == want[1]
                t[3] += 1
    results = [
        {
            "config": k,
            "exact": round(e / n, 4),
            "first_part": round(p / n, 4),
            "second_part": round(q / n, 4),
            "n": n,
        }
        for k, (e, p, q, n) in tally.items()
    ]
    score = {r["config"]: r["exact"] for r in results}
    best_token = max(score[k] for k in JUDGED)
    targets = {
        "best token router >= uniform + 10 points": best_token >= score["uniform"] + 0.10,
        "best token router >= best single expert + 10 points": best_token
        >= max(score["expert A"], score["expert B"]) + 0.10,
    }
    write("compositions", a, results, targets, ["config", "exact", "first_part", "second_part", "n"])


if __name__ == "__main__":
    main()
