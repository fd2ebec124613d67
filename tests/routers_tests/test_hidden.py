"""hidden: the centroids are the mean standardised input of each module over the expert's own
examples (checked against hooks on the plain HF model), an expert's own example scores it
highest at every module, and the host routes each token by the stored centroids."""

from __future__ import annotations

import pytest
import torch
from helpers.routing import routed_at
from transformers import AutoModelForCausalLM

from composer.host import Host
from registry.lora import read_lora
from routers.activations import example_rows, layer_norm, mean_inputs
from routers.hidden import HIDDEN, fit_centroids
from routers.hidden.config import CentroidFitConfig
from routers.token import vectors_from_bytes

PROMPT = "Reverse the letters: a b c d"
EXAMPLES = {
    "reverse": [{"prompt": "Reverse the letters: a b c d", "completion": " d c b a"}],
    "length": [{"prompt": "Count the letters: q w e r t y", "completion": " 6"}],
}


@pytest.fixture(scope="module")
def fitted(demo_ocean):
    base = demo_ocean.registry.list(kind="base")[0].path
    host = Host.load(base)
    loras = {n: read_lora(demo_ocean.registry.get(n).path) for n in EXAMPLES}
    out = {n: fit_centroids(host, loras[n], EXAMPLES[n])[0] for n in EXAMPLES}
    return host, base, loras, out


def module_inputs(base, ids) -> dict[str, torch.Tensor]:
    """Every projection's input on the plain HF base model (no Composer code), [T, d]."""
    model = AutoModelForCausalLM.from_pretrained(base)
    seen = {}
    for name, m in model.named_modules():
        if name.endswith("_proj"):
            m.register_forward_pre_hook(lambda _m, a, n=name: seen.__setitem__(n, a[0][0].float()))
    with torch.no_grad():
        model(input_ids=torch.tensor([ids]))
    return seen


def test_centroids_are_the_mean_standardised_inputs_of_each_adapted_module(fitted):
    host, base, loras, out = fitted
    ((ids, _),) = example_rows(host, EXAMPLES["reverse"])
    seen = module_inputs(base, ids)
    assert set(out["reverse"]) == set(loras["reverse"].modules)  # every module the expert adapts
    for module, c in out["reverse"].items():
        torch.testing.assert_close(c, layer_norm(seen[module]).mean(0), atol=1e-5, rtol=1e-4)


def test_batched_centroids_equal_one_example_at_a_time(fitted, demo_ocean):
    """Examples of different lengths in one right-padded forward: the pads are left out."""
    host, _, loras, _ = fitted
    examples = demo_ocean.registry.get("reverse").examples[:12]
    assert len({len(ids) for ids, _ in example_rows(host, examples)}) > 1
    batched = mean_inputs(host, loras["reverse"], examples, batch=16)
    alone = mean_inputs(host, loras["reverse"], examples, batch=1)
    for m, c in alone.items():
        torch.testing.assert_close(batched[m], c, atol=1e-5, rtol=1e-4)


def test_an_experts_own_example_scores_it_highest_at_every_module(fitted):
    """c_e is the mean of the tokens' standardised inputs, so the tokens' mean score
    LN(x)·LN(c)/√d is largest at its own centroid and at most that at any other
    (Cauchy–Schwarz): exact, whatever the model learned."""
    host, base, _, out = fitted
    for own, other in (("reverse", "length"), ("length", "reverse")):
        ((ids, _),) = example_rows(host, EXAMPLES[own])
        seen = module_inputs(base, ids)
        for module in set(out[own]) & set(out[other]):
            V = torch.stack([HIDDEN.prepare(out[n][module]) for n in (own, other)])
            mean = HIDDEN.score(seen[module], V).mean(0)
            assert mean[0] > mean[1], module


def test_with_expert_records_the_hidden_states_the_expert_produces(fitted):
    """mttl's default: the expert applied while recording. Layer 0's q_proj reads the embeddings,
    the same with or without it; a later layer's input moves."""
    host, _, loras, out = fitted
    withe, _ = fit_centroids(host, loras["reverse"], EXAMPLES["reverse"], CentroidFitConfig(with_expert=True))
    first, later = "model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.q_proj"
    torch.testing.assert_close(withe[first], out["reverse"][first])
    assert (withe[later] - out["reverse"][later]).abs().max() > 1e-3


def test_max_examples_bounds_the_fit_and_the_fitting_expert_is_removed(fitted):
    host, _, loras, _ = fitted
    few, _ = fit_centroids(host, loras["reverse"], EXAMPLES["reverse"] * 3, CentroidFitConfig(max_examples=1))
    one, stats = fit_centroids(host, loras["reverse"], EXAMPLES["reverse"])
    assert stats["examples"] == 1 and all(torch.equal(few[m], one[m]) for m in one)
    assert not host.slots  # the fitting expert is gone afterwards


@pytest.fixture(scope="module")
def composer(demo_ocean):
    from composer import Composer

    c = Composer(demo_ocean.registry)
    c.fit("hidden")  # a test ocean built before the hidden router existed gets its centroids
    return c


def test_the_host_routes_each_token_by_the_stored_centroids(demo_ocean, composer):
    """At layer 0's q_proj (it reads the embeddings: the same input whatever the routing) the
    host's top-2 per token and its weights are those of LN(x)·LN(c_e)/√d over the stored
    centroids of every expert."""
    host, module = composer.host, "model.layers.0.self_attn.q_proj"
    (plan,) = composer.route([PROMPT], router="hidden")
    assert plan.mode == "token" and plan.gate.kind == "hidden" and plan.gate.top_k == 2
    x, (_, _, got_slots, got_w) = routed_at(composer, plan, PROMPT, module)
    slots, rows = [], []
    for name in sorted(host.slots, key=host.slots.get):
        vecs = vectors_from_bytes(
            demo_ocean.registry.get_artifact(name, "hidden", "centroids.safetensors")[1]
        )
        if module in vecs:
            slots.append(host.slots[name])
            rows.append(HIDDEN.prepare(vecs[module]))
    top, idx = HIDDEN.score(x, torch.stack(rows)).topk(2, dim=-1)
    assert got_slots[0].tolist() == [[slots[i] for i in row] for row in idx.tolist()]
    torch.testing.assert_close(got_w[0], torch.softmax(top, -1), atol=1e-4, rtol=1e-4)
