"""The mixture-of-LoRA layer as a unit, on small random modules: every kind of expert delta
(plain, lora_B bias, DoRA, trained bias, bias only) against a dense reference, in selects,
merges and per-token mixtures, on Linear and Conv1D, whatever shape the tokens come in; and
adapter memory that follows the real ranks.

The reference for expert e is its own module computed densely from merged weights, as PEFT
defines it: f_e(x) = g_e ⊙ ((W + s B A) x + s b_B) + b_e, with g_e = m / ||W + s B A|| per
output row for DoRA (1 otherwise) and b_e the bias it was trained with (the base's
otherwise). A token with weights w_j gets f_base(x) + Σ_j w_j (f_j(x) - f_base(x)).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from composer.host import MoLoRALinear, SequenceRouting, use_routing

D_IN, D_OUT = 6, 5


def make_base(kind: str) -> nn.Module:
    torch.manual_seed(0)
    if kind == "linear":
        return nn.Linear(D_IN, D_OUT)
    conv = Conv1D(D_OUT, D_IN)  # weight [in, out]
    nn.init.normal_(conv.weight)
    nn.init.normal_(conv.bias)
    return conv


def weight_out_in(base: nn.Module) -> torch.Tensor:
    return base.weight if isinstance(base, nn.Linear) else base.weight.T


def experts() -> list[dict]:
    g = torch.Generator().manual_seed(1)
    rnd = lambda *shape: torch.randn(*shape, generator=g)
    return [
        {"A": rnd(2, D_IN), "B": rnd(D_OUT, 2), "scale": 0.5, "lora_bias": rnd(D_OUT)},
        {"A": rnd(3, D_IN), "B": rnd(D_OUT, 3), "scale": 2.0, "magnitude": rnd(D_OUT).abs() + 0.5},
        {"bias": rnd(D_OUT)},  # bias="all" on a module the adapter does not adapt
        {
            "A": rnd(4, D_IN),
            "B": rnd(D_OUT, 4),
            "scale": 1.0,
            "bias": rnd(D_OUT),
            "magnitude": rnd(D_OUT).abs(),
        },
    ]


def dense(base: nn.Module, e: dict, x: torch.Tensor) -> torch.Tensor:
    W = weight_out_in(base)
    merged = W + e.get("scale", 0.0) * (e["B"] @ e["A"]) if "A" in e else W
    g = e["magnitude"] / torch.linalg.norm(merged, dim=1) if "magnitude" in e else torch.ones(D_OUT)
    shift = e.get("scale", 0.0) * e["lora_bias"] if "lora_bias" in e else 0
    return g * (x @ merged.T + shift) + e.get("bias", base.bias)


def layer_with(base: nn.Module) -> MoLoRALinear:
    layer = MoLoRALinear(base)
    for slot, e in enumerate(experts()):
        layer.set_slot(slot, **e)
    return layer


class PerToken:
    """A per-token routing: given slots/weights for every token (what gates produce)."""

    def __init__(self, slots, weights):
        self.slots, self.weights = slots, weights

    def assign(self, layer, x):
        assert x.shape[0] == self.slots.shape[0]  # the module's tokens, flattened, in order
        return self.slots, self.weights


@pytest.mark.parametrize("kind", ["linear", "conv1d"])
@pytest.mark.parametrize("flat", [False, True], ids=["batch-seq-d", "tokens-d"])
def test_selects_merges_and_token_mixtures_equal_the_dense_reference(kind, flat):
    base = make_base(kind)
    layer, exps = layer_with(base), experts()
    x = torch.randn(3, 4, D_IN, generator=torch.Generator().manual_seed(2))
    xin = x.reshape(-1, D_IN) if flat else x
    with torch.no_grad():
        f = [dense(base, e, x) for e in exps]
        f0 = base(x)
        rows = [[(0, 1.0)], [(1, 0.7), (3, 0.3)], [(2, 1.0), (1, 0.5)]]  # a select, a merge, bias-only + DoRA
        with use_routing(SequenceRouting(rows)):
            got = layer(xin).reshape(3, 4, D_OUT)
        for b, row in enumerate(rows):
            want = f0[b] + sum(w * (f[j][b] - f0[b]) for j, w in row)
            torch.testing.assert_close(got[b], want, atol=1e-5, rtol=1e-5)
        slots = torch.randint(-1, 4, (12, 2), generator=torch.Generator().manual_seed(3))
        weights = torch.rand(12, 2, generator=torch.Generator().manual_seed(4))
        with use_routing(PerToken(slots, weights)):
            got = layer(xin).reshape(12, D_OUT)
        want = f0.reshape(12, D_OUT).clone()
        fr = [t.reshape(12, D_OUT) for t in f]
        for n in range(12):
            for s, w in zip(slots[n].tolist(), weights[n].tolist()):
                if s >= 0:
                    want[n] += w * (fr[s][n] - f0.reshape(12, D_OUT)[n])
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


class OneSlot:
    """The one-slot form of `assign` (PHATGOOSE's gate fitting): every token, one expert."""

    def __init__(self, slot: int, weights):
        self.slot, self.weights = slot, weights

    def assign(self, layer, x):
        return self.slot, self.weights


@pytest.mark.parametrize("kind", ["linear", "conv1d"])
@pytest.mark.parametrize("slot", [0, 1, 2, 3], ids=["lora_bias", "dora", "bias-only", "dora+bias"])
def test_one_slot_per_token_weights_equal_the_dense_reference(kind, slot):
    base = make_base(kind)
    layer = layer_with(base)
    x = torch.randn(3, 4, D_IN, generator=torch.Generator().manual_seed(5))
    w = torch.rand(12, 1, generator=torch.Generator().manual_seed(6))
    with torch.no_grad(), use_routing(OneSlot(slot, w)):
        got = layer(x).reshape(12, D_OUT)
        f0 = base(x).reshape(12, D_OUT)
        want = f0 + w * (dense(base, experts()[slot], x).reshape(12, D_OUT) - f0)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_memory_follows_the_real_ranks_and_removal_frees_rows():
    layer = MoLoRALinear(nn.Linear(64, 48))
    ranks = [8, 2, 16, 4, 128, 8, 8, 8]
    for slot, r in enumerate(ranks):
        layer.set_slot(slot, torch.randn(r, 64), torch.randn(48, r), 1.0)
    mem = layer.memory()
    assert mem["rows_real"] == 1 + sum(ranks)  # the zero row, then exactly the ranks
    assert mem["rows_held"] <= 1.25 * mem["rows_real"] + 1, mem
    held = mem["rows_held"]
    freed = layer.offset[2]
    layer.clear_slot(2)  # an r=16 expert leaves: its rows take a new expert without growing the pool
    a = torch.randn(16, 64)
    layer.set_slot(8, a, torch.randn(48, 16), 1.0)
    assert layer.memory()["rows_held"] == held and layer.offset[8] == freed
    assert torch.equal(layer.A_rows[layer.offset[8] : layer.offset[8] + 16], a)
    before = {
        s: layer.A_rows[layer.offset[s] : layer.offset[s] + layer.rank[s]].clone() for s in (0, 1, 3, 8)
    }
    layer.clear_slot(4)  # the r=128 expert leaves: the pool, now mostly empty, is repacked to the real rows
    mem = layer.memory()
    assert mem["rows_held"] == mem["rows_real"] == 1 + sum(layer.rank)
    for s, rows in before.items():  # every other expert keeps its rows (at new offsets)
        assert torch.equal(layer.A_rows[layer.offset[s] : layer.offset[s] + layer.rank[s]], rows)
    assert not layer.A_rows[0].any()  # row 0 stays zero
