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


def test_entry_points(demo_ocean):
    env = {**os.environ, "COMPOSER_HOME": str(demo_ocean.home)}
    r = subprocess.run([sys.executable, "-m", "composer", "--help"], capture_output=True, text=True, env=env, check=False)
    assert r.returncode == 0 and "build-demo" in r.stdout
    exe = shutil.which("composer", path=os.path.dirname(sys.executable))
    r = subprocess.run([exe, "experts", "list", "--json"], capture_output=True, text=True, env=env, check=False)
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
    assert main([*h, "register", str(adapter), "--name", "rev", "--base", "tiny", "--description", "reverses",
                 "--tags", "demo,text", "--examples", str(examples)]) == 0
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


@pytest.mark.parametrize("argv", [
    ["register", "/no/such/dir", "--name", "x"],
    ["register", "{adapter}", "--name", "Bad Name", "--base", BASE_NAME],
    ["register", "{adapter}", "--name", "reverse", "--base", BASE_NAME],  # taken
    ["register", "{adapter}", "--name", "fresh", "--base", "no-such-base"],
    ["register", "{adapter}", "--name", "fresh", "--base", BASE_NAME, "--examples", "/no/file.jsonl"],
    ["experts", "show", "no-such-expert"],
    ["experts", "remove", "no-such-expert"],
    ["experts", "show"],
])
def test_errors_are_one_line_and_change_nothing(demo_ocean, argv, capsys):
    reg = demo_ocean.registry
    before = (reg.counts(), _listing(reg.store.root))
    argv = [a.replace("{adapter}", str(reg.get("reverse").path)) for a in argv]
    assert main(["--home", str(demo_ocean.home), *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("composer: error: ") and "\n" not in err and "Traceback" not in err
    assert (reg.counts(), _listing(reg.store.root)) == before
