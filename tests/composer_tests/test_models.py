"""Whole-model experts: the LRU pool loads on demand and keeps at most N resident."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def test_pool_is_lru_bounded_and_follows_versions(demo_ocean, tmp_path):
    from composer.models import ModelPool
    from registry import Registry

    reg = Registry(home=tmp_path / "home")
    base = demo_ocean.out / "base"
    for name in ("m1", "m2", "m3"):
        reg.register(base, name, kind="model")
    pool = ModelPool(reg, max_resident=2)
    h1 = pool.get("m1")
    pool.get("m2")
    assert pool.get("m1") is h1 and pool.resident() == ["m2", "m1"]  # a hit refreshes recency
    pool.get("m3")
    assert pool.resident() == ["m1", "m3"]  # m2 was least recently used
    reg.register(base, "m1", kind="model", new_version=True)
    assert pool.get("m1") is h1  # same files (digest): nothing to reload
    changed = tmp_path / "changed"
    model = AutoModelForCausalLM.from_pretrained(base)
    with torch.no_grad():
        model.lm_head.weight.mul_(1.01)
    model.save_pretrained(changed)
    AutoTokenizer.from_pretrained(base).save_pretrained(changed)
    reg.register(changed, "m1", kind="model", new_version=True)
    assert pool.get("m1") is not h1 and pool.resident() == ["m3", "m1"]  # a new version reloads
    pool.drop("m3")
    assert pool.resident() == ["m1"]
    assert pool.get("m1").generate(["Count down from 3"], max_new_tokens=4)[0].token_ids
    with pytest.raises(ValueError, match="not a whole model"):
        ModelPool(demo_ocean.registry, 1).get("demo-base")
