"""Batch evaluation in-process on the fast demo ocean: exact accuracies, the output cache,
multiple choice, malformed benchmarks, the report files, and fitting CoE/Bench-CoE from it."""

from __future__ import annotations

import json

import pytest
from helpers.server import copy_home

from composer.cli import main
from composer.eval import BenchmarkError, evaluate, load_benchmark, summarise, write_report
from composer.eval.benchmark import Example
from composer.eval.cache import OutputCache

HELD_IN = [
    "Write these letters backwards: c a t",
    "Put the letters in reverse order: d o g",
    "Write these letters backwards: a b c d",
    "Reverse the letters: q r s",
    "Reverse the letters: e f g h",
]
HELD_OUT = [
    "Flip the order of the letters: x y z",
    "Flip the order of the letters: m n o p",
    "Put the letters in reverse order: k l",
    "Flip the order of the letters: u v w",
    "Mirror the order: i j",
]


@pytest.fixture(scope="module")
def composer(demo_ocean):
    from composer import Composer

    return Composer(demo_ocean.registry)


@pytest.fixture(scope="module")
def known(composer):
    """Six reverse prompts whose answers are set from what the models say, computed on the host directly:
    the reverse expert is right on exactly four (two per split), and the base on none. Per split, the
    first two prompts where the expert and the base answer differently get the expert's answer, and a
    third gets an answer nobody gives (the partly trained experts' own answers are not assumed)."""
    host, rows = composer.host, []
    for split, prompts in (("held-in", HELD_IN), ("held-out", HELD_OUT)):
        n = len(prompts)
        expert = [g.text for g in host.generate(prompts, [{"reverse": 1.0}] * n, max_new_tokens=32)]
        base = [g.text for g in host.generate(prompts, [{}] * n, max_new_tokens=32)]
        differ = [i for i in range(n) if expert[i] != base[i]]
        assert len(differ) >= 3, (expert, base)  # the expert changes what the base says
        for i in differ[:3]:
            answer = expert[i] if i in differ[:2] else "no such answer"
            rows.append(
                {
                    "id": f"k{len(rows)}",
                    "prompt": prompts[i],
                    "answer": answer,
                    "task": "reverse",
                    "split": split,
                }
            )
    return rows


def test_known_answers_give_exact_accuracies_and_the_cache_serves_a_rerun(composer, known, tmp_path):
    examples = load_benchmark(known)
    cache = OutputCache(tmp_path / "cache.sqlite")
    run = evaluate(composer, examples, "base,oracle,expert:reverse", cache=cache)
    rows = {r["router"]: r for r in summarise(run)}
    assert (rows["base"]["held_in"], rows["base"]["held_out"]) == (0.0, 0.0)
    for name in ("oracle", "expert:reverse"):
        assert (rows[name]["held_in"], rows[name]["held_out"], rows[name]["overall"]) == (2 / 3, 2 / 3, 4 / 6)
    assert rows["oracle"]["oracle_agreement"] == 1.0 and rows["base"]["oracle_agreement"] == 0.0
    assert rows["expert:reverse"]["experts_per_request"] == 1 and rows["base"]["active_params"] == 0
    assert rows["expert:reverse"]["active_params"] == composer.registry.get("reverse").config["num_params"]
    assert run.generated == 12 and run.cached == 6  # oracle and expert:reverse execute the same thing

    calls = []
    execute = composer.execute
    composer.execute = lambda *a, **k: calls.append(a) or execute(*a, **k)
    try:
        again = evaluate(composer, examples, "base,oracle,expert:reverse", cache=cache)
    finally:
        del composer.execute
    assert calls == [] and again.generated == 0 and again.cached == 18
    assert [(r["prediction"], r["correct"]) for r in again.records] == [
        (r["prediction"], r["correct"]) for r in run.records
    ]


def test_multiple_choice_picks_the_most_likely_choice(composer, known):
    rows = [
        {
            "id": r["id"],
            "prompt": r["prompt"],
            "choices": ["t a c", "c a t", "a c t"],
            "label": 0,
            "task": "reverse",
            "split": r["split"],
        }
        for r in known[:2]
    ]
    run = evaluate(composer, load_benchmark(rows), "expert:reverse,base")
    for rec in run.records:
        row = next(r for r in rows if r["id"] == rec["id"])
        mixture = {"reverse": 1.0} if rec["router"] == "expert:reverse" else {}
        ll = composer.host.loglik([row["prompt"]] * 3, row["choices"], [mixture] * 3)
        assert rec["prediction"] == row["choices"][max(range(3), key=ll.__getitem__)]
        assert rec["correct"] == (ll[0] == max(ll))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"id": "a", "prompt": "p", "task": "t", "split": "held-in"}', "either 'answer'"),
        ('{"id": "a", "prompt": "p", "answer": "x", "task": "t", "split": "train"}', "split must be"),
        (
            '{"id": "a", "prompt": "p", "choices": ["x", "y"], "label": 2, "task": "t", "split": "held-in"}',
            "'label'",
        ),
        ('{"id": "a", "prompt": "", "answer": "x", "task": "t", "split": "held-in"}', "'prompt'"),
        ('{"id": "k0", "prompt": "p", "answer": "x", "task": "t", "split": "held-in"}', "duplicate id"),
    ],
)
def test_malformed_lines_are_named(tmp_path, line, message, capsys, demo_ocean):
    good = json.dumps({"id": "k0", "prompt": "p", "answer": "x", "task": "t", "split": "held-in"})
    path = tmp_path / "bench.jsonl"
    path.write_text(f"{good}\n\n{line}" + "\n")
    with pytest.raises(BenchmarkError, match=f"bench.jsonl:3: .*{message}"):
        load_benchmark(path)
    assert (
        main(["--home", str(demo_ocean.home), "eval", "--benchmark", str(path), "--out", str(tmp_path / "o")])
        == 1
    )
    assert "bench.jsonl:3: " in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_limit_keeps_both_splits_and_every_task(demo_ocean):
    examples = load_benchmark("demo", demo_ocean.registry, limit=8)
    assert sum(e.split == "held-in" for e in examples) == 8 == sum(e.split == "held-out" for e in examples)
    assert len({e.task for e in examples if e.split == "held-in"}) == 8


def test_cli_report_and_fitting_coe_and_bench_coe_from_it(demo_ocean, tmp_path, capsys):
    home = tmp_path / "home"
    copy_home(demo_ocean, home, demo=True)  # fitting writes the base model's router artifacts
    out = tmp_path / "eval"
    argv = [
        "--home",
        str(home),
        "eval",
        "--routers",
        "base,oracle,experts,retrieval,phatgoose",
        "--limit",
        "4",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    assert "8 examples" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert {r["router"] for r in results["records"]} >= {"base", "oracle", "expert:reverse", "phatgoose"}
    assert all(k in r for r in results["records"] for k in ("experts", "weights", "prediction", "correct"))
    report = (out / "report.md").read_text()
    assert "| router | held-in | held-out |" in report and "best single expert" in report
    for png in ("accuracy_by_split.png", "accuracy_by_task.png", "usage_phatgoose.png"):
        assert (out / png).stat().st_size > 1000
    assert [r["router"] for r in results["summary"]][:2] == ["base", "oracle"]

    assert main(["--home", str(home), "fit", "coe", "--from-eval", str(out)]) == 0
    fitted = json.loads(capsys.readouterr().out)
    assert set(fitted["map"]) == {r["task"] for r in results["records"]}  # one best expert per task
    assert main(["--home", str(home), "fit", "bench_coe", "--from-eval", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["prompts"] == len({r["prompt"] for r in results["records"]})
    assert main(["--home", str(home), "fit", "coe", "--from-eval", str(tmp_path / "nowhere")]) == 1


def test_write_report_round_trips_the_summary(composer, known, tmp_path):
    run = evaluate(composer, load_benchmark(known), "base,expert:reverse")
    rows = write_report(run, tmp_path / "r")
    assert json.loads((tmp_path / "r" / "results.json").read_text())["summary"] == json.loads(
        json.dumps(rows)
    )


@pytest.mark.slow
def test_ray_shards_give_the_in_process_results(composer, known, monkeypatch, tmp_path):
    from composer.settings import Settings
    from ray_cluster.eval import evaluate_on_ray

    monkeypatch.setenv("RAY_TMPDIR", f"/tmp/rte{tmp_path.name[-6:]}")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    examples = load_benchmark(known)
    local = evaluate(composer, examples, "base,expert:reverse,phatgoose", usage=False)
    spread = evaluate_on_ray(
        Settings(home=str(composer.registry.home)), composer.base, examples, local.specs, {}, None, workers=2
    )
    key = lambda r: (r["id"], r["router"], r["prediction"], r["correct"])
    assert [key(r) for r in spread.records] == [key(r) for r in local.records]
    assert spread.generated == local.generated and set(spread.usage) == {"phatgoose"}


def test_usage_sample_takes_the_tasks_in_turn():
    """The usage plot's prompts span the benchmark's tasks (held-out first), not its first task."""
    from composer.eval.runner import usage_sample

    ex = lambda i, task, split="held-out": Example(f"{task}{i}", f"{task} {i}", task, split)
    rows = [ex(i, t) for t in ("a", "b", "c") for i in range(3 if t == "a" else 1)] + [ex(0, "d", "held-in")]
    assert usage_sample(rows, 4) == ["a 0", "b 0", "c 0", "a 1"]
    assert usage_sample(rows, 16) == ["a 0", "b 0", "c 0", "a 1", "a 2"]
    assert usage_sample([ex(0, "d", "held-in"), ex(1, "d", "held-in")], 1) == ["d 0"]
