"""Heterogeneous batches: rows on 8 different adapters vs one adapter vs PEFT `adapter_names=`.

Tokens/s of a forward pass (prefill) and of greedy generation for a batch whose rows use
8 different LoRA adapters, against the same batch all on one adapter (homogeneous) and
against PEFT's mixed-adapter batch (`adapter_names=`) on the same adapters, on a realistic
random base (hidden 512, 8 layers; `--smoke`: tiny). The base model alone (no adapter) is
the ceiling any adapter scheme can reach. Targets: mixed >= 0.85x homogeneous and >= 1.3x
PEFT mixed.

    python bench/mixed_batch.py [--smoke] [--threads N]
"""

from __future__ import annotations

import torch
from common import CACHE, args, compare, random_adapters, realistic_base, write

from composer.host import Host

N_ADAPTERS = 8


def main() -> None:
    a = args(__doc__.splitlines()[0])
    hidden, layers, batch, seq, new = (128, 2, 8, 16, 4) if a.smoke else (512, 8, 16, 64, 16)
    repeat = 2 if a.smoke else 8
    root = CACHE / f"mixture-h{hidden}-l{layers}"
    base = realistic_base(root / "base", hidden=hidden, layers=layers, heads=4 if a.smoke else 8)
    paths = random_adapters(base, root / "adapters", N_ADAPTERS)
    names = [f"e{i:03d}" for i in range(N_ADAPTERS)]
    host = Host.load(base, device=a.device, dtype=a.dtype)
    for n, p in zip(names, paths):
        host.add_adapter(n, p)
    ids = torch.randint(3, len(host.tokenizer), (batch, seq), generator=torch.Generator().manual_seed(0))
    ids = ids.to(a.device)
    mask = torch.ones_like(ids)
    mixed_rows = [{names[b % N_ADAPTERS]: 1.0} for b in range(batch)]
    same_rows = [{names[0]: 1.0}] * batch
    peft = _peft(base, names, paths).to(a.device, a.dtype)
    peft_names = [names[b % N_ADAPTERS] for b in range(batch)]
    prefill = {
        "base_only": lambda: host.logits(ids, mask, mixtures=[{}] * batch),
        "mixed": lambda: host.logits(ids, mask, mixtures=mixed_rows),
        "homogeneous": lambda: host.logits(ids, mask, mixtures=same_rows),
        "peft_mixed": lambda: peft(input_ids=ids, attention_mask=mask, adapter_names=peft_names),
    }
    gen = {
        "max_new_tokens": new,
        "min_new_tokens": new,
        "do_sample": False,
        "pad_token_id": host.tokenizer.pad_token_id,
    }
    decode = {
        "base_only": lambda: _host_generate(host, ids, mask, [{}] * batch, gen),
        "mixed": lambda: _host_generate(host, ids, mask, mixed_rows, gen),
        "homogeneous": lambda: _host_generate(host, ids, mask, same_rows, gen),
        "peft_mixed": lambda: peft.generate(
            input_ids=ids, attention_mask=mask, adapter_names=peft_names, **gen
        ),
    }
    results = [
        _row("prefill", prefill, batch, batch * seq, repeat),
        _row("generate", decode, batch, batch * new, repeat),
    ]
    targets = {f"{r['phase']}: mixed/homogeneous >= 0.85": r["mixed/homogeneous"] >= 0.85 for r in results}
    targets |= {f"{r['phase']}: mixed/peft_mixed >= 1.3": r["mixed/peft_mixed"] >= 1.3 for r in results}
    write(
        "mixed_batch",
        a,
        results,
        targets,
        [
            "phase",
            "batch",
            "tokens",
            "base_only_tok_s",
            "mixed_tok_s",
            "homogeneous_tok_s",
            "peft_mixed_tok_s",
            "mixed/homogeneous",
            "mixed/peft_mixed",
            "base_only/peft_mixed",
        ],
    )


def _row(phase: str, runs: dict, batch: int, tokens: int, repeat: int) -> dict:
    with torch.no_grad():
        t = compare(runs, repeat)
    tps = {k: tokens / (v["p50_ms"] / 1000) for k, v in t.items()}
    row = {
        "phase": phase,
        "batch": batch,
        "tokens": tokens,
        **{f"{k}_tok_s": v for k, v in tps.items()},
        "mixed/homogeneous": tps["mixed"] / tps["homogeneous"],
        "mixed/peft_mixed": tps["mixed"] / tps["peft_mixed"],
        "base_only/peft_mixed": tps["base_only"] / tps["peft_mixed"],
    }  # the ceiling of any adapter scheme
    print(row, flush=True)
    return row


def _host_generate(host: Host, ids, mask, rows, gen: dict):
    from composer.host.routing import use_routing

    with host.lock, use_routing(host.routing(rows)):
        return host.model.generate(input_ids=ids, attention_mask=mask, **gen)


def _peft(base, names, paths):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base), str(paths[0]), adapter_name=names[0]
    )
    for n, p in zip(names[1:], paths[1:]):
        model.load_adapter(str(p), adapter_name=n)
    return model.eval()


if __name__ == "__main__":
    main()
