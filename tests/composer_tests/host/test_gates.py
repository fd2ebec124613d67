"""Token-level gates and Arrow prototypes as units: exact arithmetic on small random layers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from composer.host import Gate, MixedRouting, MoLoRALinear, RoutingTrace, use_routing
from routers import GateSpec
from routers.arrow import prototype
from routers.phatgoose import layer_norm
from routers.token import gate_kinds

KINDS = gate_kinds()


def gate(kind: str, **kw) -> Gate:
    """A host row gated by a registered kind (what the executor makes of a token-level plan)."""
    return Gate(kind, KINDS[kind].score, **kw)


def install(layer, kind: str, slot: int, v: torch.Tensor) -> None:
    layer.set_vector(kind, slot, KINDS[kind].prepare(v))


def make_layer(d_in=6, d_out=5, ranks=(2, 3, 1), seed=0):
    torch.manual_seed(seed)
    layer = MoLoRALinear(nn.Linear(d_in, d_out))
    layer.path = "m.layers.0.q"
    loras = []
    for s, r in enumerate(ranks):
        A, B = torch.randn(r, d_in), torch.randn(d_out, r)
        layer.set_slot(s, A, B, scale=0.5 * (s + 1))
        loras.append((A, B, 0.5 * (s + 1)))
    return layer, loras


def reference(layer, loras, x, logits, k, temperature=1.0):
    """Dense reference: every token's top-k experts by `logits`, softmax over the kept ones."""
    y = layer.base_layer(x)
    top, idx = logits.topk(k, dim=-1)
    w = torch.softmax(top / temperature, dim=-1)
    out = y.clone()
    for n in range(x.shape[0]):
        for j in range(k):
            A, B, s = loras[int(idx[n, j])]
            out[n] += w[n, j] * s * (B @ (A @ x[n]))
    return out


@pytest.mark.parametrize("kind", ["phatgoose", "arrow"])
def test_gate_matches_dense_reference(kind):
    layer, loras = make_layer()
    V = torch.randn(3, 6)
    for s in range(3):
        install(layer, kind, s, V[s])
    x = torch.randn(1, 7, 6)
    logits = layer_norm(x[0]) @ layer_norm(V).T / math.sqrt(6) if kind == "phatgoose" else (x[0] @ V.T).abs()
    with use_routing(MixedRouting([gate(kind, top_k=2, temperature=0.7)])):
        got = layer(x)[0]
    torch.testing.assert_close(got, reference(layer, loras, x[0], logits, 2, 0.7))


def test_bias_candidates_per_row_k_and_trace():
    layer, loras = make_layer()
    V = torch.randn(3, 6)
    for s in range(3):
        install(layer, "arrow", s, V[s])
    x = torch.randn(3, 4, 6)
    trace = RoutingTrace()
    rows = [
        gate("arrow", top_k=1, bias={2: 1e6}),  # a huge bias forces expert 2 everywhere
        gate("arrow", top_k=2, experts=[0, 1]),  # only 0 and 1 are candidates
        [(1, 1.0)],
    ]  # a fixed row in the same batch
    with use_routing(MixedRouting(rows, trace)):
        y = layer(x)
    A, B, s = loras[2]
    torch.testing.assert_close(y[0], layer.base_layer(x[0]) + s * x[0] @ A.T @ B.T)
    logits = (x[1] @ V.T).abs()
    logits[:, 2] = float("-inf")
    torch.testing.assert_close(y[1], reference(layer, loras, x[1], logits, 2))
    A, B, s = loras[1]
    torch.testing.assert_close(y[2], layer.base_layer(x[2]) + s * x[2] @ A.T @ B.T)
    ((path, rows_seen, slots, weights),) = trace.calls
    assert path == "m.layers.0.q" and rows_seen.tolist() == [0, 1]
    assert (slots[0, :, 0] == 2).all() and (slots[0, :, 1] == -1).all()
    assert set(slots[1].flatten().tolist()) <= {0, 1}
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4))


def test_experts_without_a_vector_or_this_module_are_never_chosen():
    layer, _ = make_layer()
    install(layer, "phatgoose", 1, torch.randn(6))  # only expert 1 has a gate here
    x = torch.randn(1, 5, 6)
    trace = RoutingTrace()
    with use_routing(MixedRouting([gate("phatgoose", top_k=2)], trace)):
        layer(x)
    slots = trace.calls[0][2]
    assert (slots[..., 0] == 1).all() and (slots[..., 1] == -1).all()
    layer.clear_slot(1)  # removing the expert drops its vector too
    assert not layer.has_vector["phatgoose"].any()
    with pytest.raises(ValueError, match="does not adapt"):
        layer.set_vector("phatgoose", 1, torch.randn(6))
    with pytest.raises(ValueError, match="unknown gate kind 'nope'; known: arrow, hidden, phatgoose"):
        GateSpec(kind="nope")  # a plan may only name a registered kind
    with pytest.raises(TypeError, match="score function"):
        Gate("arrow", None)


@pytest.mark.parametrize(("r", "d_in", "d_out"), [(8, 64, 96), (16, 40, 12), (4, 3, 30)])
def test_arrow_prototype_is_the_top_right_singular_vector(r, d_in, d_out):
    torch.manual_seed(r)
    A, B = torch.randn(r, d_in), torch.randn(d_out, r)
    p = prototype(A, B)
    assert p.shape == (d_in,)
    assert abs(float(p.norm()) - 1) < 1e-6
    v = torch.linalg.svd((B @ A).double())[2][0].float()  # full SVD of the formed ΔW
    assert abs(float(p @ v)) > 1 - 1e-6
    # sign-invariant: ΔW -> -ΔW (either factor negated) gives the same prototype
    torch.testing.assert_close(prototype(-A, B), p)
    torch.testing.assert_close(prototype(A, -B), p)
    torch.testing.assert_close(prototype(A * 3, B / 7), p)  # and scale-invariant
