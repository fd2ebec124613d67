"""Token-level routers on the demo ocean: PHATGOOSE gates, GLIDER, introspection (Arrow vs PEFT:
test_arrow.py)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from composer.cli import main
from composer.executor import host_row
from composer.host import Host, RoutingTrace, read_lora
from routers.token import gate_kinds

PROMPTS = [
    "Reverse the letters: a b c d",
    "Encode with the Caesar cipher, shift one: h e l l o",
    "Count the letters: x y z",
    "Write these letters backwards: q w e r t y",
]


@pytest.fixture(scope="module")
def composer(demo_ocean):
    from composer import Composer

    return Composer(demo_ocean.registry)


def test_gate_fitting_changes_only_gates(demo_ocean):
    from routers.phatgoose.config import GateFitConfig
    from routers.phatgoose.fit import fit_gates

    host = Host.load(demo_ocean.out / "base")
    host.model.requires_grad_(False)
    path = demo_ocean.out / "experts" / "reverse"
    files = {f.name: f.read_bytes() for f in path.iterdir()}
    lora = read_lora(path)
    before_model = {k: v.clone() for k, v in host.model.state_dict().items()}
    before_lora = {m: (d.A.clone(), d.B.clone()) for m, d in lora.modules.items()}
    rec = demo_ocean.registry.get("reverse")
    gates, stats = fit_gates(host, lora, rec.examples, GateFitConfig(steps=8, batch_size=8))
    assert set(gates) == set(lora.modules) and all(v.abs().sum() > 0 for v in gates.values())
    assert stats["loss_last"] < stats["loss_first"]
    after = {k.replace(".base_layer.", "."): v for k, v in host.model.state_dict().items()}  # modules wrapped
    assert after.keys() == before_model.keys()
    for k, v in after.items():
        assert torch.equal(v, before_model[k]), k
    for m, d in lora.modules.items():
        assert torch.equal(d.A, before_lora[m][0]) and torch.equal(d.B, before_lora[m][1])
    assert {f.name: f.read_bytes() for f in path.iterdir()} == files
    assert host.slots == {} and not any(any(layer.installed) for layer in host.layers.values())  # removed


def test_gates_may_start_at_the_experts_hidden_centroids(demo_ocean):
    """`init_centroid=c` starts each gate at c times the unit hidden-state centroid (the hidden
    router's vector) instead of zero; with a vanishing learning rate it stays there."""
    from routers.hidden import fit_centroids
    from routers.phatgoose.config import GateFitConfig
    from routers.phatgoose.fit import fit_gates

    host = Host.load(demo_ocean.out / "base")
    host.model.requires_grad_(False)
    lora = read_lora(demo_ocean.out / "experts" / "reverse")
    examples = demo_ocean.registry.get("reverse").examples
    cents, _ = fit_centroids(host, lora, examples)
    gates, _ = fit_gates(host, lora, examples, GateFitConfig(steps=1, lr=1e-12, init_centroid=3.0))
    assert set(gates) == set(cents)
    for m, c in cents.items():
        torch.testing.assert_close(gates[m], 3.0 * c / c.norm(), atol=1e-6, rtol=1e-5)


def test_registration_fits_every_token_artifact_and_nothing_else(demo_ocean, composer, tmp_path):
    import shutil

    reg = demo_ocean.registry
    digests = {(a.expert, a.router, a.key): a.sha256 for a in reg.artifacts()}
    adapter = tmp_path / "mirror"
    shutil.copytree(demo_ocean.out / "experts" / "atbash", adapter)
    examples = [
        {"prompt": f"Mirror these letters: {w}", "completion": " z y x"} for w in ["a b c", "d e", "f g h"]
    ]
    composer.register(
        adapter,
        "mirror",
        description="Mirrors letters.",
        examples=examples,
        fit_options={"phatgoose": {"steps": 5}},
    )
    try:
        after = {(a.expert, a.router, a.key): a.sha256 for a in reg.artifacts()}
        assert {k for k in after if k not in digests} == {
            ("mirror", "embeddings", "all-MiniLM-L6-v2.npy"),
            ("mirror", "phatgoose", "gates.safetensors"),
            ("mirror", "arrow", "prototypes.safetensors"),
            ("mirror", "spectr", "spectra.safetensors"),
            ("mirror", "hidden", "centroids.safetensors"),
            ("mirror", "glider", "all-MiniLM-L6-v2.npy"),
        }
        assert all(after[k] == v for k, v in digests.items())  # nothing else refit
        rec, _ = reg.get_artifact("mirror", "phatgoose", "gates.safetensors")
        assert rec.meta["steps"] == 5
        # the new expert's gates are live: it takes part in per-token routing at once
        rep = composer.inspect(
            ["Mirror these letters: a b c"], router="phatgoose", experts=["mirror", "reverse"]
        )[0]
        assert "mirror" in rep["per_token"]["top1"]
    finally:
        composer.remove("mirror")
    assert {
        (a.expert, a.router, a.key): a.sha256 for a in reg.artifacts()
    } == digests  # its artifacts went with it


def row_logits(host, prompts, rows, trace=None):
    enc = host.encode(prompts)
    return host.logits(enc["input_ids"], enc["attention_mask"], mixtures=rows, trace=trace)


def test_token_rows_mix_with_sequence_rows_in_one_batch(composer):
    host = composer.host
    plan = composer.route(PROMPTS[:1], router="phatgoose")[0]
    gate = host_row(plan)
    mixed = row_logits(host, PROMPTS[:3], [gate, {"reverse": 1.0}, {}])
    for i, row in enumerate([gate, {"reverse": 1.0}, {}]):
        alone = row_logits(host, PROMPTS[i : i + 1], [row])
        n = alone.shape[1]
        torch.testing.assert_close(mixed[i, -n:], alone[0], atol=1e-4, rtol=1e-4)
    outs = composer.generate(PROMPTS[:2], router="phatgoose", max_new_tokens=8)
    assert all(o.plan.mode == "token" and o.plan.gate.kind == "phatgoose" for o in outs)
    # greedy, token-routed generation in a batch == the same prompt alone
    assert (
        outs[1].token_ids
        == composer.generate(PROMPTS[1:2], router="phatgoose", max_new_tokens=8)[0].token_ids
    )


def own_expert_majority(composer, router, **config) -> float:
    """Share of held-in prompts whose tokens go mostly (top-1) to their skill's expert in most modules."""
    import random

    from composer.demo import skills as S

    rng = random.Random(11)
    wins = []
    for name, skill in S.SKILLS.items():
        prompts = [S.make_example(skill, rng, "seen").prompt for _ in range(3)]
        for rep in composer.inspect(prompts, router=router, **config):
            modules = rep["per_token"]["modules"].values()
            mods = [sum(bool(t) and t[0][0] == name for t in toks) > len(toks) / 2 for toks in modules]
            wins.append(sum(mods) / len(mods) > 0.5)
    return sum(wins) / len(wins)


@pytest.mark.xfail(
    strict=True,
    reason="measured: on the demo ocean PHATGOOSE's gates do not tell the skills apart "
    "(own expert top-1 on ~15% of (token, module) decisions, chance 12.5%): every skill shares the "
    "same payload tokens and prompt shape, and each gate, trained on its own data only, learns to "
    "open along the common activation direction (see README, token-level routing)",
)
def test_phatgoose_routes_held_in_prompts_to_their_expert(composer):
    assert own_expert_majority(composer, "phatgoose") > 0.5


def test_glider_held_in_setting_routes_tokens_to_the_prompts_expert(composer):
    assert own_expert_majority(composer, "glider", alpha=100.0) > 0.8


def test_glider_alpha_zero_is_phatgoose_and_large_alpha_follows_global(composer):
    host = composer.host
    prompts = PROMPTS[:3]
    pg = [host_row(p) for p in composer.route(prompts, router="phatgoose")]
    g0 = [host_row(p) for p in composer.route(prompts, router="glider", alpha=0.0)]
    assert torch.equal(row_logits(host, prompts, pg), row_logits(host, prompts, g0))
    plans = composer.route(prompts, router="glider", alpha=1000.0, top_k=2)
    trace = RoutingTrace()
    row_logits(host, prompts, [host_row(p) for p in plans], trace)
    names = {s: n for n, s in host.slots.items()}
    for path, rows, slots, _ in trace.calls:
        layer = host.layers[path]
        present = [
            n for n, s in host.slots.items() if s < len(layer.rank) and layer.has_vector["phatgoose"][s]
        ]
        for i, b in enumerate(rows.tolist()):
            ranked = sorted(present, key=lambda n: -plans[b].scores[n])
            top = {names[s] for s in slots[i, :, 0].tolist()}
            assert top == {ranked[0]}, (path, b)


def test_glider_global_top_shortlists_the_local_gates(composer):
    """global_top=m: the plan's candidates are the m best global scores, and no token of a row
    reaches an expert outside its row's shortlist; a shortlist of every expert changes nothing."""
    host = composer.host
    prompts = PROMPTS[:3]
    plans = composer.route(prompts, router="glider", alpha=0.0, global_top=2, top_k=2)
    for p in plans:
        assert p.experts == sorted(p.scores, key=lambda n: -p.scores[n])[:2]
        assert "shortlist of the global top 2" in p.explanation
    assert len({tuple(p.experts) for p in plans}) > 1  # the shortlist is per request
    trace = RoutingTrace()
    row_logits(host, prompts, [host_row(p) for p in plans], trace)
    names = {s: n for n, s in host.slots.items()}
    assert trace.calls
    for _, rows, slots, _ in trace.calls:
        for i, b in enumerate(rows.tolist()):
            assert {names[s] for s in slots[i].reshape(-1).tolist()} <= set(plans[b].experts)
    every = composer.route(prompts, router="glider", alpha=0.0, global_top=64)
    pg = composer.route(prompts, router="phatgoose")
    assert torch.equal(
        row_logits(host, prompts, [host_row(p) for p in every]),
        row_logits(host, prompts, [host_row(p) for p in pg]),
    )


def test_route_json_shows_per_token_choices_and_plot(demo_ocean, composer, capsys, tmp_path):
    from composer.introspect import plot_usage

    assert main(["--home", str(demo_ocean.home), "route", "--router", "phatgoose", "--json", PROMPTS[0]]) == 0
    (rep,) = json.loads(capsys.readouterr().out)
    assert rep["mode"] == "token" and rep["gate"]["top_k"] == 2 and rep["prompt"] == PROMPTS[0]
    rep = rep["per_token"]
    tokens = rep["tokens"]
    assert tokens and all(len(v) == len(tokens) for v in rep["modules"].values())
    assert all(
        len(choice) == 2 and math.isclose(sum(w for _, w in choice), 1.0, abs_tol=1e-3)
        for v in rep["modules"].values()
        for choice in v
    )
    for layer in rep["layers"].values():
        assert math.isclose(sum(layer.values()), 1.0, abs_tol=1e-3)
    png = plot_usage(rep["layers"], tmp_path / "usage.png", "phatgoose")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("router", sorted(gate_kinds()))
def test_every_token_router_generates_and_reports_per_token_choices(composer, router):
    (out,) = composer.generate([PROMPTS[0]], router=router, max_new_tokens=6)
    assert out.plan.gate.kind == router and out.token_ids
    rep = composer.inspect([PROMPTS[0]], router=router)[0]
    assert sum(rep["per_token"]["top1"].values()) > 0


@pytest.mark.parametrize("router", ["phatgoose", "arrow", "glider"])
def test_token_routers_generate_from_the_cli(demo_ocean, capsys, router):
    argv = [
        "--home",
        str(demo_ocean.home),
        "generate",
        "--router",
        router,
        "--max-new-tokens",
        "6",
        "--json",
        PROMPTS[0],
        PROMPTS[2],
    ]
    assert main(argv) == 0
    outs = json.loads(capsys.readouterr().out)
    assert [o["routing"]["router"] for o in outs] == [router] * 2
    assert all(o["routing"]["mode"] == "token" for o in outs)
    assert main(["--home", str(demo_ocean.home), "generate", "--router", router, "-c", "top_k=0", "x"]) == 1
    assert "top_k" in capsys.readouterr().err


def test_glider_writer_endpoint(demo_ocean, tmp_path):
    """GLIDER's instruction writer over a real OpenAI-compatible HTTP endpoint backed by the demo base LM."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from composer import Composer
    from registry import Registry
    from routers.glider import EndpointWriter

    writer_host = Host.load(demo_ocean.out / "base")
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append((self.path, body))
            tok = writer_host.tokenizer  # the demo LM's context is 128 tokens: it reads the prompt's tail
            prompt = tok.decode(
                tok(body["messages"][0]["content"], add_special_tokens=False)["input_ids"][-96:]
            )
            text = writer_host.generate([prompt], max_new_tokens=8)[0].text or "(empty)"
            data = json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        c = Composer(Registry(home=demo_ocean.home), writer=f"{url}#demo-base")
        assert isinstance(c.ctx.writer, EndpointWriter)
        rec = demo_ocean.registry.get("max")
        from routers.glider.fit import task_embedding

        v, meta = task_embedding(rec, c.ctx.encoder, c.ctx.writer)
        assert seen and seen[0][0] == "/v1/chat/completions" and seen[0][1]["model"] == "demo-base"
        assert rec.examples[0]["prompt"] in seen[0][1]["messages"][0]["content"]
        assert meta["writer"] == f"{url}#demo-base" and meta["instruction"]
        assert abs(float((v**2).sum()) - 1) < 1e-5
        with pytest.raises(Exception, match="instruction writer"):
            EndpointWriter("http://127.0.0.1:9/v1", timeout=2).write(["x"])
    finally:
        server.shutdown()


def test_serving_never_fits_missing_artifacts_composer_fit_backfills_them(demo_ocean, composer, tmp_path):
    """An expert registered straight into the registry (no post-hoc fitting) is served at once,
    but nothing is fitted on the serving path: until `fit NAME` backfills its artifacts from its
    own data, token gates and GLIDER's global term leave it out and nothing is written."""
    import shutil

    reg = demo_ocean.registry
    adapter = tmp_path / "plain"
    shutil.copytree(demo_ocean.out / "experts" / "max", adapter)
    reg.register(adapter, "plain", base="demo-base", examples=["Find the largest digit: 1 2"])
    try:
        host = composer.host  # loading the host syncs it with the registry
        slot = host.slots["plain"]
        layer = host.layers["model.layers.0.self_attn.q_proj"]
        assert not layer.has_vector["phatgoose"][slot] and not layer.has_vector["arrow"][slot]
        plan = composer.route(["Find the largest digit: 3 4"], router="glider")[0]
        assert "plain" not in plan.scores and "1 without a task embedding" in plan.explanation
        assert (
            composer.generate(["Find the largest digit: 3 4"], expert="plain", max_new_tokens=2)[0].expert
            == "plain"
        )
        assert "plain" not in composer.ctx.index.centroids()[0]  # no embeddings: not in the semantic index
        assert not reg.artifacts("plain")  # serving and routing wrote nothing
        others = {(a.expert, a.router, a.key): a.sha256 for a in reg.artifacts() if a.expert != "plain"}

        from composer import Composer

        elsewhere = Composer(reg)  # another process's view: its own caches, the same registry
        assert elsewhere.fit("embeddings", experts=["plain"])["fitted"] == ["plain"]
        assert "plain" in composer.ctx.index.centroids()[0]  # this one sees the backfill at its next request

        summary = composer.fit("phatgoose", experts=["plain"], steps=5)
        assert summary == {"artifact": "phatgoose", "fitted": ["plain"], "present": []}
        arrow = composer.fit("arrow")  # every expert: only the one lacking it is fitted
        assert arrow["fitted"] == ["plain"] and set(arrow["present"]) == {
            r.name for r in composer.experts()
        } - {"plain"}
        assert composer.fit("glider", experts=["plain"])["fitted"] == ["plain"]
        assert {a.router for a in reg.artifacts("plain")} == {"embeddings", "phatgoose", "arrow", "glider"}
        assert reg.get_artifact("plain", "phatgoose", "gates.safetensors")[0].meta["steps"] == 5
        assert {
            (a.expert, a.router, a.key): a.sha256 for a in reg.artifacts() if a.expert != "plain"
        } == others
        host = composer.host  # the next sync installs what appeared
        assert layer.has_vector["phatgoose"][slot] and layer.has_vector["arrow"][slot]
        assert "plain" in composer.route(["Find the largest digit: 3 4"], router="glider")[0].scores
        assert composer.fit("arrow", experts=["plain"]) == {
            "artifact": "arrow",
            "fitted": [],
            "present": ["plain"],
        }
    finally:
        composer.remove("plain")
