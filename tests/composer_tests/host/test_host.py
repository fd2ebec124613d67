"""The mixture-of-LoRA host against PEFT itself, on the demo ocean's real adapters."""

from __future__ import annotations

import json

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file
from torch.utils.flop_counter import FlopCounterMode
from transformers import AutoModelForCausalLM

from composer.host import Host, read_lora

# Chosen to differ: reverse r=8 alpha=16 all-linear; uppercase r=4 alpha=8 on q/v/o/up/down;
# atbash r=16 alpha=16 rsLoRA all-linear (checked in test_adapters_really_differ).
EXPERTS = ["reverse", "uppercase", "atbash"]
PROMPTS = [
    "Reverse the letters: a b c d",
    "Make these letters uppercase: q r s",
    "Encode with the Atbash cipher: h e l l o",
    "Count the letters: x y",
]
TOL = 1e-4


@pytest.fixture(scope="module")
def host(demo_ocean):
    h = Host.load(demo_ocean.out / "base")
    for name in EXPERTS:
        h.add_adapter(name, demo_ocean.out / "experts" / name)
    return h


@pytest.fixture(scope="module")
def peft(demo_ocean):
    base = AutoModelForCausalLM.from_pretrained(demo_ocean.out / "base")
    pm = PeftModel.from_pretrained(base, demo_ocean.out / "experts" / EXPERTS[0], adapter_name=EXPERTS[0])
    for name in EXPERTS[1:]:
        pm.load_adapter(demo_ocean.out / "experts" / name, adapter_name=name)
    return pm.eval()


def encode(host, prompts):
    tok = host.tokenizer
    tok.padding_side = "right"  # real tokens keep their positions, so rows can be compared alone
    return tok([host.render(p) for p in prompts], return_tensors="pt", padding=True, add_special_tokens=False)


def test_adapters_really_differ(demo_ocean):
    cfgs = {n: read_lora(demo_ocean.out / "experts" / n).config for n in EXPERTS}
    assert len({c["r"] for c in cfgs.values()}) == 3
    assert len({(c["lora_alpha"], bool(c.get("use_rslora"))) for c in cfgs.values()}) == 3
    assert len({tuple(sorted(c["target_modules"])) for c in cfgs.values()}) == 2


@pytest.mark.parametrize("name", EXPERTS)
def test_one_hot_equals_peft(host, peft, name):
    enc = encode(host, PROMPTS)
    peft.set_adapter(name)
    with torch.no_grad():
        ref = peft(**enc).logits
        base = host.logits(enc["input_ids"], enc["attention_mask"])
    got = host.logits(enc["input_ids"], enc["attention_mask"], [{name: 1.0}] * len(PROMPTS))
    real = enc["attention_mask"].bool()
    assert (got - ref)[real].abs().max().item() <= TOL
    assert (base - ref)[real].abs().max().item() > 1e-2  # the adapter does change the output


def test_heterogeneous_batch_equals_each_row_alone_in_peft(host, peft):
    mixtures = [{"reverse": 1.0}, {"uppercase": 1.0}, {"atbash": 1.0}, {}]
    enc = encode(host, PROMPTS)
    got = host.logits(enc["input_ids"], enc["attention_mask"], mixtures)
    for b, (prompt, mix) in enumerate(zip(PROMPTS, mixtures)):
        alone = encode(host, [prompt])
        n = alone["input_ids"].shape[1]
        with torch.no_grad():
            if mix:
                peft.set_adapter(next(iter(mix)))
                ref = peft(**alone).logits[0]
            else:
                with peft.disable_adapter():
                    ref = peft(**alone).logits[0]
        assert (got[b, :n] - ref).abs().max().item() <= TOL, f"row {b} ({mix or 'base'})"


def test_uniform_merge_equals_peft_cat(host, peft):
    weights = [1 / 3] * 3  # reverse first: PEFT's merged config copies its (non-rsLoRA) scaling rule
    peft.add_weighted_adapter(EXPERTS, weights, "merged", combination_type="cat")
    try:
        peft.set_adapter("merged")
        enc = encode(host, PROMPTS)
        with torch.no_grad():
            ref = peft(**enc).logits
        got = host.logits(
            enc["input_ids"], enc["attention_mask"], [dict(zip(EXPERTS, weights))] * len(PROMPTS)
        )
        assert (got - ref)[enc["attention_mask"].bool()].abs().max().item() <= TOL
    finally:
        peft.delete_adapter("merged")


def test_greedy_generation_equals_peft_per_row(host, peft):
    prompts = PROMPTS[:3]
    gens = host.generate(prompts, [{e: 1.0} for e in EXPERTS], max_new_tokens=10)
    tok = host.tokenizer
    for prompt, name, g in zip(prompts, EXPERTS, gens):
        peft.set_adapter(name)
        enc = tok(host.render(prompt), return_tensors="pt", add_special_tokens=False)
        ids = peft.generate(
            **enc,
            max_new_tokens=10,
            do_sample=False,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
        )[0, enc["input_ids"].shape[1] :].tolist()
        assert g.token_ids == ids[: len(g.token_ids)] and len(g.token_ids) in (len(ids), 10)


def test_runtime_add_and_remove_touch_only_routed_rows(demo_ocean):
    h = Host.load(demo_ocean.out / "base")
    h.add_adapter("reverse", demo_ocean.out / "experts" / "reverse")
    h.add_adapter("uppercase", demo_ocean.out / "experts" / "uppercase")
    enc = encode(h, PROMPTS[:3])
    rows = [{"reverse": 1.0}, {"uppercase": 1.0}, {}]
    before = h.logits(enc["input_ids"], enc["attention_mask"], rows)

    h.add_adapter("atbash", demo_ocean.out / "experts" / "atbash")  # larger rank: layers re-pad
    assert torch.equal(h.logits(enc["input_ids"], enc["attention_mask"], rows), before)
    routed = h.logits(enc["input_ids"], enc["attention_mask"], [{"atbash": 1.0}] * 3)
    assert (routed - before[2:3]).abs().max() > 1e-2

    h.remove_adapter("atbash")
    assert torch.equal(h.logits(enc["input_ids"], enc["attention_mask"], rows), before)
    with pytest.raises(KeyError, match="atbash"):
        h.logits(enc["input_ids"], enc["attention_mask"], [{"atbash": 1.0}] * 3)
    h.add_adapter("atbash", demo_ocean.out / "experts" / "atbash")  # slot reused, same outputs as before
    assert torch.equal(h.logits(enc["input_ids"], enc["attention_mask"], [{"atbash": 1.0}] * 3), routed)


def test_bad_adapter_changes_nothing(demo_ocean, tmp_path):
    h = Host.load(demo_ocean.out / "base")
    h.add_adapter("reverse", demo_ocean.out / "experts" / "reverse")
    enc = encode(h, PROMPTS[:1])
    before = h.logits(enc["input_ids"], enc["attention_mask"], [{"reverse": 1.0}])
    src = demo_ocean.out / "experts" / "max"
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "adapter_config.json").write_text((src / "adapter_config.json").read_text())
    tensors = load_file(src / "adapter_model.safetensors")
    key = max(k for k in tensors if "layers.3" in k and "lora_A" in k)
    tensors[key] = torch.zeros(tensors[key].shape[0], tensors[key].shape[1] + 1)  # wrong d_in, last module
    save_file(tensors, bad / "adapter_model.safetensors")
    with pytest.raises(ValueError, match="do not fit"):
        h.add_adapter("bad", bad)
    assert h.experts == ["reverse"]
    assert all(sum(r > 0 for r in layer.rank) == 1 for layer in h.layers.values())
    assert torch.equal(h.logits(enc["input_ids"], enc["attention_mask"], [{"reverse": 1.0}]), before)
    cfg = json.loads((src / "adapter_config.json").read_text())
    (bad / "adapter_config.json").write_text(json.dumps({**cfg, "modules_to_save": ["lm_head"]}))
    with pytest.raises(ValueError, match="modules_to_save is set"):  # a path that skipped the registry
        h.add_adapter("bad", bad)


def _flops(h, enc, mixtures) -> int:
    with FlopCounterMode(display=False) as fc:
        h.logits(enc["input_ids"], enc["attention_mask"], mixtures)
    return fc.get_total_flops()


def test_cost_follows_experts_used_not_installed(demo_ocean):
    """Same FLOPs for one routed expert with 1 or 8 installed; more experts used costs more."""
    experts = sorted(p.name for p in (demo_ocean.out / "experts").iterdir())
    one, all_ = Host.load(demo_ocean.out / "base"), Host.load(demo_ocean.out / "base")
    one.add_adapter("reverse", demo_ocean.out / "experts" / "reverse")
    for e in experts:
        all_.add_adapter(e, demo_ocean.out / "experts" / e)
    enc = encode(one, PROMPTS)
    routed = [{"reverse": 1.0}] * len(PROMPTS)
    assert _flops(one, enc, routed) == _flops(all_, enc, routed)
    assert _flops(all_, enc, [{e: 1 / len(experts) for e in experts}] * len(PROMPTS)) > _flops(
        all_, enc, routed
    )


class TokenGate:
    """A per-token routing (what PHATGOOSE/Arrow gates produce): slots/weights for every token."""

    def __init__(self, pick):
        self.pick, self.calls = pick, 0

    def assign(self, layer, x):  # x: the module's tokens, flattened to [N, d]
        self.calls += 1
        return self.pick(x.shape[0])


def test_per_token_gates_drive_the_same_layers(host):
    enc = encode(host, PROMPTS)
    slot = host.slots["atbash"]
    seq = host.logits(enc["input_ids"], enc["attention_mask"], [{"atbash": 1.0}] * len(PROMPTS))
    every = TokenGate(lambda n: (torch.full((n, 1), slot), torch.ones(n, 1)))
    assert torch.allclose(host.logits(enc["input_ids"], enc["attention_mask"], routing=every), seq, atol=1e-6)
    assert every.calls == len(host.layers)  # asked once per adapted module
    # top-2 per token: half the mass on each of two experts = the 50/50 merge
    two = [host.slots["reverse"], host.slots["atbash"]]
    half = TokenGate(lambda n: (torch.tensor([two] * n), torch.full((n, 2), 0.5)))
    merged = host.logits(
        enc["input_ids"], enc["attention_mask"], [{"reverse": 0.5, "atbash": 0.5}] * len(PROMPTS)
    )
    assert torch.allclose(
        host.logits(enc["input_ids"], enc["attention_mask"], routing=half), merged, atol=1e-5
    )
