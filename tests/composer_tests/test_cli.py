"""The `composer` command line: real registry homes, real demo-ocean files; errors are one
line on stderr with a non-zero exit and nothing changed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from composer.cli import main
from composer.demo.build import BASE_NAME
from registry import Registry


def _listing(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


HEAVY = ("torch", "transformers", "routers", "ray", "sentence_transformers")


def test_entry_points(demo_ocean):
    env = {**os.environ, "COMPOSER_HOME": str(demo_ocean.home)}
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "composer", "--help"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert r.returncode == 0 and "build-demo" in r.stdout
    imported = {
        line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")
    }
    assert not {m.split(".")[0] for m in imported} & set(HEAVY), "composer --help must stay instant"
    exe = shutil.which("composer", path=os.path.dirname(sys.executable))
    r = subprocess.run(
        [exe, "experts", "list", "--json"], capture_output=True, text=True, env=env, check=False
    )
    assert r.returncode == 0, r.stderr
    names = {e["name"] for e in json.loads(r.stdout)}
    assert BASE_NAME in names and "reverse" in names


def test_demo_shows_table_and_registry(demo_ocean, capsys):
    assert main(["--home", str(demo_ocean.home), "demo", "--no-serve"]) == 0
    out = capsys.readouterr().out
    assert "caesar" in out and "exact match" in out and "Registry" in out


def test_experts_show(demo_ocean, capsys):
    assert main(["--home", str(demo_ocean.home), "experts", "show", "caesar"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["name"] == "caesar" and rec["base_model"] == BASE_NAME and rec["sha256"]


def test_register_list_remove_round_trip(demo_ocean, tmp_path, capsys):
    home = tmp_path / "home"
    h = ["--home", str(home)]
    base_dir = demo_ocean.registry.get(BASE_NAME).path
    adapter = demo_ocean.registry.get("reverse").path
    examples = tmp_path / "ex.jsonl"
    examples.write_text(json.dumps({"prompt": "Reverse the letters: a b", "completion": "b a"}) + "\n")
    assert main([*h, "register", str(base_dir), "--name", "tiny", "--kind", "base"]) == 0
    assert (
        main(
            [
                *h,
                "register",
                str(adapter),
                "--name",
                "rev",
                "--base",
                "tiny",
                "--description",
                "reverses",
                "--tags",
                "demo,text",
                "--examples",
                str(examples),
            ]
        )
        == 0
    )
    rec = Registry(home=home).get("rev")
    assert rec.tags == ["demo", "text"] and rec.examples[0]["completion"] == "b a"
    capsys.readouterr()
    assert main([*h, "experts", "list", "--json"]) == 0
    assert {e["name"] for e in json.loads(capsys.readouterr().out)} == {"tiny", "rev"}
    assert main([*h, "register", str(adapter), "--name", "rev", "--base", "tiny", "--new-version"]) == 0
    capsys.readouterr()
    assert main([*h, "experts", "versions", "rev", "--json"]) == 0
    assert [v["version"] for v in json.loads(capsys.readouterr().out)] == [1, 2]
    assert main([*h, "experts", "remove", "rev"]) == 0
    assert [r.name for r in Registry(home=home).list()] == ["tiny"]


@pytest.mark.parametrize(
    "argv",
    [
        ["register", "/no/such/dir", "--name", "x"],
        ["register", "{adapter}", "--name", "Bad Name", "--base", BASE_NAME],
        ["register", "{adapter}", "--name", "reverse", "--base", BASE_NAME],  # taken
        ["register", "{adapter}", "--name", "fresh", "--base", "no-such-base"],
        ["register", "{adapter}", "--name", "fresh", "--base", BASE_NAME, "--examples", "/no/file.jsonl"],
        ["experts", "show", "no-such-expert"],
        ["experts", "remove", "no-such-expert"],
        ["experts", "show"],
        ["build-demo", "--ocean", "no-such-ocean"],
    ],
)
def test_errors_are_one_line_and_change_nothing(demo_ocean, argv, capsys):
    reg = demo_ocean.registry
    before = (reg.counts(), _listing(reg.store.root))
    argv = [a.replace("{adapter}", str(reg.get("reverse").path)) for a in argv]
    assert main(["--home", str(demo_ocean.home), *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("composer: error: ") and "\n" not in err and "Traceback" not in err
    assert (reg.counts(), _listing(reg.store.root)) == before


def test_register_whole_model_fits_its_embeddings(demo_ocean, tmp_path, capsys):
    """--kind model goes through Composer once a base is registered: routable at once."""
    h = ["--home", str(tmp_path / "home")]
    base_dir = str(demo_ocean.registry.get(BASE_NAME).path)
    examples = tmp_path / "ex.txt"
    examples.write_text("Say hello\nSay hi\n")
    assert main([*h, "register", base_dir, "--name", "tiny", "--kind", "base"]) == 0
    assert (
        main(
            [
                *h,
                "register",
                base_dir,
                "--name",
                "whole",
                "--kind",
                "model",
                "--examples",
                str(examples),
                "--fit-option",
                "phatgoose.steps=3",
            ]
        )
        == 1
    )
    assert "fit options for phatgoose do not apply to a model expert" in capsys.readouterr().err
    argv = [*h, "register", base_dir, "--name", "whole", "--kind", "model", "--examples", str(examples)]
    assert main(argv) == 0
    assert "registered whole v1 (model)" in capsys.readouterr().out
    arts = {a.router: a.meta for a in Registry(home=tmp_path / "home").artifacts("whole")}
    assert sorted(arts) == ["embeddings"] and arts["embeddings"]["rows"] == 2


@pytest.mark.parametrize(
    ("command", "defaults"),
    [
        ("register", ["lora", "lora|model|base", "FITTER.KEY=VALUE"]),
        ("route", ["$COMPOSER_DEFAULT_ROUTER", "KEY=VALUE"]),
        ("eval", ["demo", "eval-out", "32"]),
        ("serve", ["127.0.0.1", "8000"]),
        ("demo", ["127.0.0.1", "8000"]),
        ("fit", ["expert|domain", "query|subject", "task|category", "backfills experts that lack it"]),
    ],
)
def test_help_shows_defaults(command, defaults, capsys):
    assert main([command, "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "[default:" in out or command == "register"
    for text in defaults:
        assert text in out, (command, text)


@pytest.mark.parametrize(
    "argv",
    [
        ["experts", "frobnicate"],
        ["route"],  # no prompt
        ["route", "x", "--frobnicate"],
        ["--frobnicate", "experts", "list"],
        ["nosuch"],
        ["fit"],
        ["experts", "list", "--version", "one"],
        ["fit", "coe", "--by", "nobody"],
        ["register", "{adapter}", "--name", "fresh", "--kind", "adapter"],
        ["register", "{adapter}", "--kind", "lora"],  # no --name
    ],
)
def test_usage_errors_exit_2_and_change_nothing(demo_ocean, argv, capsys):
    reg = demo_ocean.registry
    before = (reg.counts(), _listing(reg.store.root))
    argv = [a.replace("{adapter}", str(reg.get("reverse").path)) for a in argv]
    assert main(["--home", str(demo_ocean.home), *argv]) == 2
    cap = capsys.readouterr()
    assert "Usage" in cap.err and "Traceback" not in cap.err + cap.out
    assert (reg.counts(), _listing(reg.store.root)) == before


def test_fit_unknown_router_is_one_line(demo_ocean, capsys):
    assert main(["--home", str(demo_ocean.home), "fit", "nonesuch"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("composer: error: ") and "nonesuch" in err and err.count("\n") == 1
    assert main(["--home", str(demo_ocean.home), "fit", "phatgoose", "--data", "x.jsonl"]) == 1
    assert "--data applies to coe, bench_coe and retrieval only" in capsys.readouterr().err


def test_fit_passes_the_router_name_and_experts_through(demo_ocean, monkeypatch, capsys):
    from composer.api import Composer

    calls = []

    def fake_fit(self, router, **kw):
        calls.append((router, kw))
        return {"router": router, "experts": kw.get("experts")}

    monkeypatch.setattr(Composer, "fit", fake_fit)
    h = ["--home", str(demo_ocean.home)]
    assert main([*h, "fit", "phatgoose", "--expert", "reverse", "--expert", "max"]) == 0
    assert json.loads(capsys.readouterr().out) == {"router": "phatgoose", "experts": ["reverse", "max"]}
    assert main([*h, "fit", "bench_coe", "--level", "subject"]) == 0
    assert calls == [
        ("phatgoose", {"experts": ["reverse", "max"]}),
        ("bench_coe", {"results": None, "level": "subject"}),
    ]


def test_interrupt_exits_130(monkeypatch, capsys):
    import routers

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(routers, "schemas", interrupted)
    assert main(["routers"]) == 130
    assert capsys.readouterr().err == "composer: interrupted\n"
