"""SpectR: the spectrum artifact is exact against the dense ΔW, reduces to Arrow at rank 1, and
the host routes every token by it across experts of different ranks (4, 8 and 16 here)."""

from __future__ import annotations

import pytest
import torch
from helpers.routing import routed_at

from registry.lora import read_lora
from routers.arrow import ARROW, prototype
from routers.spectr import SPECTR, spectrum

PROMPT = "Reverse the letters: a b c d"


@pytest.mark.parametrize("rank", [1, 4, 16])
def test_the_score_is_the_update_norm_of_every_direction(rank):
    g = torch.Generator().manual_seed(rank)
    A, B = torch.randn(rank, 48, generator=g), torch.randn(40, rank, generator=g)
    x = torch.randn(32, 48, generator=g)
    dense = B @ A
    want = (x @ dense.T).norm(dim=-1) / dense.norm()
    got = SPECTR.score(x, spectrum(A, B).flatten().unsqueeze(0))[:, 0]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    if rank == 1:  # one direction: Arrow's |x·p|
        torch.testing.assert_close(
            got, ARROW.score(x, prototype(A, B).unsqueeze(0))[:, 0], rtol=1e-4, atol=1e-6
        )


def test_a_rank_deficient_adapter_keeps_only_its_real_directions():
    g = torch.Generator().manual_seed(0)
    A, B = torch.randn(8, 48, generator=g), torch.randn(40, 8, generator=g)
    B[:, 3:] = 0  # rank 3 in an r=8 adapter
    M = spectrum(A, B)
    assert M.shape == (3, 48)
    x = torch.randn(16, 48, generator=g)
    torch.testing.assert_close(
        SPECTR.score(x, M.flatten().unsqueeze(0))[:, 0],
        (x @ (B @ A).T).norm(dim=-1) / (B @ A).norm(),
        rtol=1e-4,
        atol=1e-6,
    )


@pytest.fixture(scope="module")
def composer(demo_ocean):
    from composer import Composer

    c = Composer(demo_ocean.registry)
    c.fit("spectr")  # a test ocean built before SpectR existed gets its spectra; else a no-op
    return c


def test_the_host_routes_each_token_by_the_dense_spectrum_of_every_expert(demo_ocean, composer):
    """At a module that reads the embeddings (layer 0 q_proj: the same input whatever the routing),
    the host's top-k per token and its weights are those of ‖ΔW_e x‖/‖ΔW_e‖_F computed densely from
    each expert's adapter file, over experts of rank 4, 8 and 16 in one zero-padded table."""
    host, module = composer.host, "model.layers.0.self_attn.q_proj"
    (plan,) = composer.route([PROMPT], router="spectr", top_k=3)
    assert plan.mode == "token" and plan.gate.kind == "spectr"
    x, (_, _, got_slots, got_w) = routed_at(composer, plan, PROMPT, module)
    names = sorted(host.slots, key=host.slots.get)
    dense = {}
    for name in names:
        d = read_lora(demo_ocean.registry.get(name).path).modules.get(module)
        if d is not None:
            W = d.B.double() @ d.A.double()
            dense[host.slots[name]] = ((x.double() @ W.T).norm(dim=-1) / W.norm()).float()
    assert (
        len(
            {
                read_lora(demo_ocean.registry.get(n).path).modules[module].A.shape[0]
                for n in names
                if host.slots[n] in dense
            }
        )
        > 1
    )
    slots = sorted(dense)
    scores = torch.stack([dense[s] for s in slots], -1)  # [T, E]
    top, idx = scores.topk(3, dim=-1)
    assert got_slots[0].tolist() == [[slots[i] for i in row] for row in idx.tolist()]
    torch.testing.assert_close(got_w[0], torch.softmax(top, -1), atol=1e-4, rtol=1e-4)
