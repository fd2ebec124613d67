"""Dynamic-k (top_p) for every token router, on the demo ocean: the kept experts per token are
the fewest reaching the asked softmax mass, against the full softmax of the same gates."""

from __future__ import annotations

import pytest
import torch

from composer.executor import host_row
from composer.host import RoutingTrace

PROMPTS = ["Reverse the letters: a b c d"]


@pytest.fixture(scope="module")
def composer(demo_ocean):
    from composer import Composer

    return Composer(demo_ocean.registry)


def row_logits(host, prompts, rows, trace=None):
    enc = host.encode(prompts)
    return host.logits(enc["input_ids"], enc["attention_mask"], mixtures=rows, trace=trace)


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
