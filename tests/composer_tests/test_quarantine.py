"""No adapter that passed registration can stop a host from serving the others.

On a private copy of the fast demo ocean, served in this process behind TestClient (the same
app and host as on Ray), with failures injected into real state, never by stubbing the host:
- a stored adapter file changed after registration (bytes flipped on disk): the host refuses
  it when it loads it and quarantines it; every other expert is served; the expert is out
  of routing, shown as quarantined on GET /v1/experts/{name} and on /metrics, a request
  naming it is a 503, and `composer experts release` brings it back once the file is whole;
- an expert that turns the model's output NaN/Inf at run time (its weights in the host's
  memory overwritten): the batch that meets it fails only for the rows that use it, the
  expert is found by probing each expert alone and quarantined, the others answer as before;
- registration proves an adapter can be served: one whose output overflows is refused
  (400 naming why) and nothing is stored.
"""

from __future__ import annotations

import json
import shutil

import pytest
from helpers.api import REVERSE, chat, metric
from helpers.local import local_server
from helpers.server import AUTH, assert_error

from composer.cli import main
from composer.errors import ExpertUnavailable
from composer.executor import execute_each
from composer.serving.archive import pack
from routers import RoutingPlan

TALLY = ["Tally the letters in this word: a b c", "Tally the letters in this word: h o u s e"]


@pytest.fixture
def server(demo_ocean, tmp_path):
    with local_server(demo_ocean, tmp_path) as s:
        yield s


def register(server, name: str, source: str = "length", **edits) -> dict:
    adapter = server["ocean"].out / "experts" / source
    meta = {
        "name": name,
        "description": "Tallies letters in a word.",
        "examples": TALLY,
        "fit_options": {"phatgoose": {"steps": 3}},
        **edits,
    }
    r = server["client"].post(
        "/v1/experts",
        files={"archive": ("a.zip", pack(adapter), "application/zip")},
        data={"metadata": json.dumps(meta)},
        headers=AUTH,
    )
    return r


def test_a_stored_file_changed_after_registration_is_quarantined_and_the_rest_served(server, capsys):
    http = server["client"]
    assert register(server, "tally").status_code == 201
    assert [chat(http, "composer", p).json()["routing"]["served_by"] for p in TALLY] == ["tally", "tally"]
    composer = http.app.state.backend.composer()
    before = chat(http, "countdown", "Count down from 4").json()["choices"][0]["message"]["content"]
    composer.adapters.quarantine("countdown", composer.registry.get("countdown").version, "a drill")
    assert http.app.state.registry.release("countdown") == 1  # release works (and a drill is over)

    stored = composer.registry.get("tally").path / "adapter_model.safetensors"
    whole = stored.read_bytes()
    stored.write_bytes(whole[:-64] + bytes(64))  # a disk fault after registration
    from composer import Composer

    replica = Composer(composer.registry, settings=composer.settings)  # a replica starting after the fault
    assert "tally" not in replica.host.slots and "reverse" in replica.host.slots  # it loads all but that one

    for _ in range(2):  # every other expert keeps being served, routed or named
        assert (
            chat(http, "countdown", "Count down from 4").json()["choices"][0]["message"]["content"] == before
        )
    assert chat(http, "composer", REVERSE).json()["routing"]["served_by"] == "reverse"
    record = http.get("/v1/experts/tally").json()
    assert (
        "stored files changed since registration: adapter_model.safetensors"
        in record["quarantined"]["reason"]
    )
    assert metric(http, "composer_expert_quarantined", expert="tally", version=str(record["version"])) == 1
    assert all(
        chat(http, "composer", p).json()["routing"]["served_by"] != "tally" for p in TALLY
    )  # out of routing
    assert_error(chat(http, "tally", TALLY[0]), 503, "quarantined", "stored files changed")

    stored.write_bytes(whole)
    assert main(["--home", str(server["home"]), "experts", "release", "tally"]) == 0
    assert "released 1" in capsys.readouterr().out
    assert http.get("/v1/experts/tally").json()["quarantined"] is None
    assert [chat(http, "composer", p).json()["routing"]["served_by"] for p in TALLY] == ["tally", "tally"]


def test_an_expert_that_breaks_at_run_time_fails_only_its_rows(server):
    http = server["client"]
    assert register(server, "volatile", source="max").status_code == 201
    composer = http.app.state.backend.composer()
    plans = [RoutingPlan.direct(e) for e in ("reverse", "volatile", "countdown")]
    prompts = [REVERSE, "Find the largest digit: 3 9 2", "Count down from 4"]
    gen = {"max_new_tokens": 6}
    good = [composer.execute([p], [plan], **gen)[0].token_ids for p, plan in zip(prompts, plans)]
    host = composer.host
    for layer in host.layers.values():  # its weights in the host's memory go bad (a fault, not a stub)
        slot = host.slots["volatile"]
        if slot < len(layer.rank) and layer.rank[slot]:
            off, r = layer.offset[slot], layer.rank[slot]
            layer.A_rows[off : off + r] = 1e30

    out = execute_each(composer.execute, prompts, plans, gen)  # as the Ray host batches requests
    assert isinstance(out[1], ExpertUnavailable) and "volatile" in str(out[1])
    assert [out[0].token_ids, out[2].token_ids] == [good[0], good[2]]
    held = composer.registry.quarantined()
    version = composer.registry.get("volatile").version
    assert "NaN or Inf" in held[("volatile", version)]["reason"]
    assert "volatile" not in composer.resident()
    assert_error(chat(http, "volatile", prompts[1]), 503, "volatile")
    assert chat(http, "composer:phatgoose", REVERSE).status_code == 200  # token routers skip it


def test_registration_refuses_an_adapter_that_cannot_be_served(server):
    http = server["client"]
    before = http.get("/v1/experts").json()
    store = sorted(p.relative_to(server["home"]) for p in (server["home"] / "store").rglob("*"))
    d = server["home"].parent / "overflowing"
    shutil.copytree(server["ocean"].out / "experts" / "length", d)
    from safetensors.torch import load_file, save_file

    tensors = load_file(d / "adapter_model.safetensors")
    save_file(
        {k: v * 1e30 for k, v in tensors.items()}, d / "adapter_model.safetensors"
    )  # finite, but overflows
    r = http.post(
        "/v1/experts",
        files={"archive": ("a.zip", pack(d), "application/zip")},
        data={"metadata": json.dumps({"name": "overflowing", "examples": TALLY})},
        headers=AUTH,
    )
    assert_error(r, 400, "the adapter cannot be served", "NaN or Inf")
    assert http.get("/v1/experts").json() == before
    assert sorted(p.relative_to(server["home"]) for p in (server["home"] / "store").rglob("*")) == store
