"""Demo-ocean training steps: packed rows with the LM head on answer tokens, against padding.

`composer build-demo` trains every step on `train._packed` rows (examples packed first-fit,
block-diagonal causal mask) with `train.lm_loss` (the LM head on labelled positions only).
The baseline is what it did before, and what HF's Trainer does by default: the right-padded
batch through `model(**batch).loss`. Both compute the same loss and gradients
(`tests/composer_tests/test_demo.py`); this times one optimiser step of each, interleaved,
on the domains ocean's corpus: the base LM (batch 64, all weights) and a LoRA expert
(batch 32, the `wide` LoRA on every projection), and reports the share of real tokens in
the rows each one computes on. Target: packed >= 1.3x faster per step on both.

    python bench/training.py [--smoke] [--threads N]
"""

from __future__ import annotations

import random

import torch
from common import args, compare, write
from peft import LoraConfig, get_peft_model

from composer.demo import domains as D
from composer.demo import train as T
from composer.demo.build import LORA, _expert_examples


def _stepper(model, tok, rows, batch_size: int, packed: bool, seed: int):
    """One AdamW step per call, on the next sampled batch (the same sequence for both ways);
    rows are tokenized once, as `train.fit` and HF's Trainer do."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    rng = random.Random(seed)
    seqs, labels = T._encode(tok, rows)

    def step():
        pick = rng.sample(range(len(seqs)), batch_size)
        s, la = [seqs[i] for i in pick], [labels[i] for i in pick]
        pad = tok.pad_token_id
        loss = T.lm_loss(model, T._pack(s, la, pad)) if packed else model(**T._pad(s, la, pad)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def _real_share(tok, rows, batch_size: int, make) -> float:
    rng = random.Random(1)
    real = total = 0
    for _ in range(20):
        ids = make(tok, rng.sample(rows, batch_size))["input_ids"]
        real, total = real + int((ids != tok.pad_token_id).sum()), total + ids.numel()
    return real / total


def main() -> None:
    a = args(__doc__.splitlines()[0])
    rng = random.Random(0)
    n = 200 if a.smoke else 1000
    base_rows = [D.make_example(s, rng) for s in D.BASE_SKILLS.values() for _ in range(n // 4)]
    base_rows += [D.base_compositions(rng) for _ in range(n // 2)]
    expert_rows = _expert_examples(D, D.SKILLS["caesar"], rng, n)
    tok = T.train_tokenizer([f"{e.prompt}\n {e.answer}" for e in base_rows + expert_rows])
    results = []
    for name, rows, batch_size in (("base LM", base_rows, 64), ("LoRA expert", expert_rows, 32)):
        ways = {}
        for packed in (False, True):
            model = T.make_base(tok, seed=0)
            if name == "LoRA expert":
                model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **LORA["wide"]))
            model.train()
            ways["packed" if packed else "padded"] = _stepper(model, tok, rows, batch_size, packed, seed=2)
        t = compare(ways, repeat=3 if a.smoke else 40, warmup=1 if a.smoke else 3)
        results.append(
            {
                "model": name,
                "batch": batch_size,
                "padded_ms": t["padded"]["p50_ms"],
                "packed_ms": t["packed"]["p50_ms"],
                "speedup": t["padded"]["p50_ms"] / t["packed"]["p50_ms"],
                "padded_real_tokens": _real_share(tok, rows, batch_size, T._batch),
                "packed_real_tokens": _real_share(tok, rows, batch_size, T._packed),
            }
        )
    write(
        "training",
        a,
        results,
        {"packed >= 1.3x faster per step (base and expert)": all(r["speedup"] >= 1.3 for r in results)},
        ["model", "batch", "padded_ms", "packed_ms", "speedup", "padded_real_tokens", "packed_real_tokens"],
    )


if __name__ == "__main__":
    main()
