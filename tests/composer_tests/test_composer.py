"""The Python API and CLI end to end on the demo ocean: runtime registration, route, generate."""

from __future__ import annotations

import json
import shutil

import pytest

from composer.cli import main


def artifact_digests(reg) -> dict:
    return {(a.expert, a.router, a.key): a.sha256 for a in reg.artifacts()}


def test_register_at_runtime_indexes_only_the_new_expert(demo_ocean, tmp_path):
    from composer import Composer

    reg = demo_ocean.registry
    c = Composer(reg)
    before = artifact_digests(reg)
    prompts = ["Tally the letters in this word: a b c d", "Tally the letters in this word: h o u s e"]
    assert [p.experts for p in c.route(prompts, router="retrieval")] != [["tally"]] * 2
    served_before = c.generate(prompts, expert="length", max_new_tokens=6)

    adapter = tmp_path / "tally"
    shutil.copytree(demo_ocean.out / "experts" / "length", adapter)
    words = [
        "m n o",
        "z y x w",
        "k e",
        "p l u s h",
        "t",
        "g h i j k l",
        "v w",
        "b o a t",
        "c r a b s",
        "f e d",
    ]
    examples = [f"Tally the letters in this word: {w}" for w in words]
    c.register(adapter, "tally", description="Tallies letters in a word.", examples=examples)
    try:
        after = artifact_digests(reg)
        new = {k for k in after if k not in before}
        assert new == {
            ("tally", "embeddings", "all-MiniLM-L6-v2.npy"),
            ("tally", "phatgoose", "gates.safetensors"),
            ("tally", "arrow", "prototypes.safetensors"),
            ("tally", "spectr", "spectra.safetensors"),
            ("tally", "hidden", "centroids.safetensors"),
            ("tally", "glider", "all-MiniLM-L6-v2.npy"),
        }
        assert all(after[k] == v for k, v in before.items())  # nothing else refit
        assert [p.experts for p in c.route(prompts, router="retrieval")] == [["tally"]] * 2
        outs = c.generate(prompts, router="retrieval", max_new_tokens=6)
        assert all(o.expert == "tally" for o in outs)
        # tally is a copy of length's weights: served by the new slot, it answers exactly as length does,
        # and length itself is untouched by the registration
        assert [o.token_ids for o in outs] == [o.token_ids for o in served_before]
        assert [o.token_ids for o in c.generate(prompts, expert="length", max_new_tokens=6)] == [
            o.token_ids for o in served_before
        ]
    finally:
        c.remove("tally")
    assert "tally" not in c.host.experts
    assert all(p.experts != ["tally"] for p in c.route(prompts, router="retrieval"))
    assert artifact_digests(reg) == before


def test_generate_one_heterogeneous_batch_and_direct_experts(demo_ocean):
    from composer import Composer, ComposerError

    c = Composer(demo_ocean.registry)
    prompts = ["Count the letters: a b c", "Find the largest digit: 3 9 2", "Count down from 3"]
    tasks = ["length", "max", "countdown"]
    outs = c.generate(
        [{"prompt": p, "task": t} for p, t in zip(prompts, tasks)], router="oracle", max_new_tokens=10
    )
    assert [o.expert for o in outs] == tasks
    # one heterogeneous batch answers as each expert does alone (answers of the partly trained
    # fast experts themselves are not asserted)
    assert [o.token_ids for o in outs] == [
        c.generate([p], expert=t, max_new_tokens=10)[0].token_ids for p, t in zip(prompts, tasks)
    ]
    base = c.generate(prompts[:1], expert="demo-base")[0]
    assert base.plan.mode == "base" and base.expert is None
    with pytest.raises(ComposerError, match="unknown expert 'ghost'"):
        c.generate(prompts, expert="ghost")
    with pytest.raises(ComposerError, match="either expert"):
        c.generate(prompts, expert="length", router="retrieval")


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_cli_route_generate_routers(demo_ocean, capsys):
    home = str(demo_ocean.home)
    code, out, _ = run(
        capsys, "--home", home, "route", "Count the letters: a b c", "--router", "retrieval", "--json"
    )
    assert code == 0
    (plan,) = json.loads(out)
    assert plan["experts"] == ["length"] and plan["explanation"]
    from composer import Composer

    prompts = ["Count the letters: a b c", "Count down from 2"]
    code, out, _ = run(capsys, "--home", home, "generate", *prompts, "--router", "coe", "--json")
    local = Composer(demo_ocean.registry).generate(prompts, router="coe")
    assert code == 0 and [(o["text"], o["expert"]) for o in json.loads(out)] == [
        (o.text, o.expert) for o in local
    ]
    assert [o.expert for o in local] == ["length", "countdown"]  # coe's routing decision
    code, out, _ = run(capsys, "--home", home, "generate", prompts[0], "--expert", "length")
    assert code == 0 and local[0].text in out
    code, out, _ = run(capsys, "routers", "--json")
    assert code == 0 and "retrieval" in json.loads(out)
    code, out, _ = run(
        capsys,
        "--home",
        home,
        "route",
        "x",
        "--router",
        "loraretriever",
        "-c",
        "top_k=2",
        "-c",
        "combine=ensemble",
        "--json",
    )
    assert code == 0 and json.loads(out)[0]["mode"] == "ensemble"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["route", "x", "--router", "nope"], "unknown router 'nope'"),
        (
            ["route", "x", "--router", "retrieval", "-c", "depth=0"],
            "depth: Input should be greater than or equal to 1",
        ),
        (["route", "x", "-c", "oops"], "config must be KEY=VALUE"),
        (["generate", "x", "--expert", "ghost"], "unknown expert 'ghost'"),
        (["generate", "x", "--expert", "max", "--router", "coe"], "either --expert or --router"),
        (["fit", "coe", "--map", "/nonexistent.json"], "not found"),
    ],
)
def test_cli_errors_are_one_line(demo_ocean, capsys, argv, message):
    code, _out, err = run(capsys, "--home", str(demo_ocean.home), *argv)
    assert code == 1 and message in err and err.startswith("composer: error:") and err.count("\n") == 1


def test_cli_register_fits_post_hoc_artifacts(demo_ocean, capsys, tmp_path):
    home = str(demo_ocean.home)
    code, _, err = run(
        capsys,
        "--home",
        home,
        "register",
        str(demo_ocean.out / "experts" / "length"),
        "--name",
        "counter",
        "--base",
        "demo-base",
        "--fit-option",
        "phatgoose.steps=-1",
    )
    assert code == 1 and "steps" in err and "counter" not in [r.name for r in demo_ocean.registry.list()]
    examples = tmp_path / "ex.txt"
    examples.write_text("Say how many letters: a b\nSay how many letters: c d e\n")
    code, _, err = run(
        capsys,
        "--home",
        home,
        "register",
        str(demo_ocean.out / "experts" / "length"),
        "--name",
        "counter",
        "--base",
        "demo-base",
        "--examples",
        str(examples),
        "--fit-option",
        "phatgoose.steps=3",
    )
    assert code == 0, err
    try:
        arts = {a.router: a.meta for a in demo_ocean.registry.artifacts("counter")}
        assert sorted(arts) == ["arrow", "embeddings", "glider", "hidden", "phatgoose", "spectr"]
        assert arts["embeddings"]["rows"] == 2 and arts["phatgoose"]["steps"] == 3
    finally:
        assert run(capsys, "--home", home, "experts", "remove", "counter")[0] == 0
