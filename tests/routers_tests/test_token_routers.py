"""Token-level routers on the demo ocean: PHATGOOSE gates, Arrow vs PEFT, GLIDER, introspection."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from composer.cli import main
from composer.executor import host_row
from composer.host import Gate, Host, RoutingTrace, read_lora
from routers.arrow import ARROW, fit_prototypes

# the demo's "wide" experts share rank 8 and all-linear targets, as PEFT's Arrow requires
WIDE = ["reverse", "caesar", "length"]
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


def test_arrow_prototypes_match_the_adapters(demo_ocean, composer):
    from routers.token import vectors_from_bytes

    for name in WIDE:
        _, data = demo_ocean.registry.get_artifact(name, "arrow", "prototypes.safetensors")
        stored = vectors_from_bytes(data)
        lora = read_lora(demo_ocean.out / "experts" / name)
        for m, p in fit_prototypes(lora).items():
            torch.testing.assert_close(stored[m], p)
            A, B = lora.modules[m].A, lora.modules[m].B
            v = torch.linalg.svd((B @ A).double())[2][0].float()
            assert abs(float(p @ v)) > 1 - 1e-5


def power_iteration_bound(A, B, seed: int, iters: int = 15) -> float:
    """Upper bound on 1 - |cos| between PEFT's prototype and the exact one for this module.

    PEFT starts from v0 = randn(d_in) (private generator seeded with rng_seed) and applies
    v <- A^T B^T B A v `iters` times, so tan(angle) <= (s2/s1)^(2*iters) * tan(angle of v0),
    and 1 - |cos| <= tan^2. Computed from the module's own spectrum and PEFT's own v0.
    """
    g = torch.Generator().manual_seed(seed)
    v0 = torch.randn(A.shape[1], generator=g).double()
    _, s, vh = torch.linalg.svd((B @ A).double(), full_matrices=False)
    c = vh @ v0
    tan0 = float(c[1:].norm() / c[0].abs())
    return (float(s[1] / s[0]) ** (2 * iters) * tan0) ** 2 + 1e-6


def peft_arrow(demo_ocean, top_k=2, seed=0):
    from peft import ArrowConfig, create_arrow_model

    paths = [str(demo_ocean.out / "experts" / n) for n in WIDE]
    base = AutoModelForCausalLM.from_pretrained(demo_ocean.out / "base")
    return create_arrow_model(
        base, paths, ArrowConfig(top_k=top_k, router_temperature=1.0, rng_seed=seed)
    ).eval()


def test_arrow_agrees_with_peft(demo_ocean, composer):
    """Our Arrow vs PEFT's create_arrow_model on the same three adapters, top_k=2, temperature 1.

    PEFT computes each prototype with 15 seeded power iterations; ours is exact (QR + r x r
    SVD). So the comparison has two parts with two tolerances:
    1. prototypes: per module, 1 - |cos(ours, PEFT's)| <= the power-iteration error bound
       computed from that module's singular values and PEFT's own start vector (small-gap
       modules of these briefly trained adapters leave PEFT up to ~1e-2 off; ours is exact);
    2. routing and mixing: with PEFT's prototypes installed in our host, the logits equal
       PEFT's to 1e-5 (float32 round-off), so everything but the prototype itself agrees.
    """
    peft_model = peft_arrow(demo_ocean)
    host = Host.load(demo_ocean.out / "base")
    for n in WIDE:
        host.add_adapter(n, demo_ocean.out / "experts" / n)
    enc = host.encode(PROMPTS)
    with torch.no_grad():
        want = peft_model(**enc).logits  # builds PEFT's prototypes
    loras = {n: read_lora(demo_ocean.out / "experts" / n) for n in WIDE}
    theirs: dict[str, dict] = {n: {} for n in WIDE}
    checked = 0
    for name, mod in peft_model.named_modules():
        if hasattr(mod, "lora_arrow") and "arrow_router" in mod.lora_arrow:
            path = name.removeprefix("base_model.model.")
            P = mod.lora_arrow["arrow_router"].prototypes
            for i, n in enumerate(WIDE):
                A, B = loras[n].modules[path].A, loras[n].modules[path].B
                ours = fit_prototypes(loras[n])[path]
                assert 1 - abs(float(ours @ P[i])) <= power_iteration_bound(A, B, seed=0), (n, path)
                theirs[n][path] = P[i]
                checked += 1
    assert checked == len(WIDE) * len(loras[WIDE[0]].modules)
    for n in WIDE:
        host.set_vectors(n, "arrow", theirs[n])
    got = host.logits(
        enc["input_ids"], enc["attention_mask"], mixtures=[Gate("arrow", ARROW.score, top_k=2)] * len(PROMPTS)
    )
    mask = enc["attention_mask"].bool()
    assert (got - want)[mask].abs().max() < 1e-5


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


@pytest.mark.parametrize("router", ["arrow", "phatgoose", "glider"])
def test_dynamic_k_keeps_the_fewest_experts_reaching_the_mass(composer, router):
    """top_p (dynamic-k), at every (module, token): the kept experts are the shortest prefix of
    all candidates by softmax probability whose mass reaches p, at most top_k, weighted by their
    renormalised probabilities — checked against the full softmax of the same gates (top_k =
    every expert) at the modules that read the embeddings (layer 0's q/k/v: the same input in
    both runs; later modules see what earlier routing made), so a token whose gates are unsure
    uses more experts. Everywhere, every token keeps between 1 and top_k experts."""
    host, p, k = composer.host, 0.6, 3
    (full_plan,) = composer.route(PROMPTS[:1], router=router, top_k=64)
    (dyn_plan,) = composer.route(PROMPTS[:1], router=router, top_k=k, top_p=p)
    assert "mass 0.6" in dyn_plan.explanation
    full, dyn = RoutingTrace(), RoutingTrace()
    row_logits(host, PROMPTS[:1], [host_row(full_plan)], trace=full)
    row_logits(host, PROMPTS[:1], [host_row(dyn_plan)], trace=dyn)
    assert [c[0] for c in full.calls] == [c[0] for c in dyn.calls] and full.calls
    for _, _, ds, _ in dyn.calls:
        kept = (ds.reshape(-1, ds.shape[-1]) >= 0).sum(-1)
        assert bool(((kept >= 1) & (kept <= k)).all())
    first = {f"model.layers.0.self_attn.{m}_proj" for m in "qkv"}
    same_input = [(f, d) for f, d in zip(full.calls, dyn.calls) if f[0] in first]
    assert same_input
    sizes = set()
    for (_, _, fs, fw), (_, _, ds, dw) in same_input:
        fs, fw = fs.reshape(-1, fs.shape[-1]).tolist(), fw.reshape(-1, fw.shape[-1])
        ds, dw = ds.reshape(-1, ds.shape[-1]).tolist(), dw.reshape(-1, dw.shape[-1])
        for t in range(len(fs)):
            want, mass = [], 0.0
            for j, slot in enumerate(fs[t]):
                if slot < 0 or mass >= p or len(want) == k:
                    break
                want.append(j)
                mass += float(fw[t, j])
            assert [s for s in ds[t] if s >= 0] == [fs[t][j] for j in want], t
            kept = fw[t, want]
            torch.testing.assert_close(dw[t, : len(want)], kept / kept.sum(), atol=1e-5, rtol=1e-4)
            sizes.add(len(want))
    assert sizes <= set(range(1, k + 1))
    # p below 1/#experts: the most probable expert alone always reaches it, so every token keeps one
    (one_plan,) = composer.route(PROMPTS[:1], router=router, top_k=k, top_p=0.05)
    one = RoutingTrace()
    row_logits(host, PROMPTS[:1], [host_row(one_plan)], trace=one)
    for _, _, slots, weights in one.calls:
        assert bool((slots[..., 0] >= 0).all()) and bool((slots[..., 1:] < 0).all())
        assert bool((weights[..., 0] == 1).all())


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
