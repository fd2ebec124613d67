"""The shipped demo base: the domains ocean's seed-0 base LM, committed (3 MB) so that
`composer build-demo` skips its slowest step and every machine starts its experts from the
same weights (training differs across CPUs in the last bits, and partly trained experts
amplify it).

Contract:
- `fingerprint(texts, tok, seed, steps, lr)` names what a base LM is trained on and how: a
  sha256 over the corpus, the tokenizer, the architecture (`train.base_config`), the seed,
  the step count and the learning rate.
- `load(fp)` returns the shipped base (`AutoModelForCausalLM`, eval mode) when it carries
  exactly the fingerprint `fp`, else None: any change to the corpus, tokenizer, architecture
  or recipe makes the caller train its own, never use a stale one.
- `save(model, tok, fp, recipe)` writes model, tokenizer and `provenance.json` to `DIR`.
  `make demo-base` runs `build.ship_base()`: the very training `composer build-demo
  --retrain-base` runs for the full domains ocean at seed 0, then `save`.
"""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from composer.demo import train as T

DIR = Path(__file__).parent / "shipped_base"


def fingerprint(texts, tok, seed: int, steps: int, lr: float) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode())
        h.update(b"\0")
    h.update(tok.backend_tokenizer.to_str().encode())
    arch = T.base_config(tok).to_dict()
    arch.pop("transformers_version", None)
    h.update(json.dumps({"arch": arch, "seed": seed, "steps": steps, "lr": lr}, sort_keys=True).encode())
    return h.hexdigest()


def load(fp: str):
    try:
        provenance = json.loads((DIR / "provenance.json").read_text())
    except FileNotFoundError:
        return None
    if provenance.get("fingerprint") != fp:
        return None
    return AutoModelForCausalLM.from_pretrained(DIR, dtype=torch.float32).eval()


def save(model, tok, fp: str, recipe: dict) -> None:
    model.save_pretrained(DIR)
    tok.save_pretrained(DIR)
    provenance = {
        "fingerprint": fp,
        "trained_by": "make demo-base (composer.demo.build.ship_base)",
        **recipe,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }
    (DIR / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
