"""Tiny real models for the registry tests: a Llama of any width with a WordLevel tokenizer
(`tiny_model_dir`), a PEFT LoRA of it (`adapter_dir`), and what the tests compare: `snapshot(reg)`
(counts, store files, rows of every status), `copy_of(src, tmp_path)` and `fit_ok`, a
registration-time fitter that checks it sees the staged files and returns one artifact.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from registry import Registry

WORDS = ["[UNK]", "[PAD]", "<s>", "</s>", "the", "a", "cat", "dog", "sat", "on", "mat", "add", "two", "plus"]


def tiny_model_dir(d: Path, hidden: int) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(hidden)
    cfg = LlamaConfig(
        vocab_size=64,
        hidden_size=hidden,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
    )
    LlamaForCausalLM(cfg).save_pretrained(d)  # safetensors is the only format transformers 5 writes
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", bos_token="<s>", eos_token="</s>"
    ).save_pretrained(d)
    return d


def adapter_dir(base_dir: Path, out: Path, **lora_kw) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(base_dir)
    peft_model = get_peft_model(
        model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False, **lora_kw)
    )
    peft_model.save_pretrained(out)
    return out


def snapshot(reg: Registry):
    root = reg.store.root
    files = sorted(p.relative_to(root).as_posix() + ("/" if p.is_dir() else "") for p in root.rglob("*"))
    rows = [(r.name, r.version, r.status) for r in reg.list(include_removed=True)]
    return reg.counts(), files, rows


def copy_of(src: Path, tmp_path: Path, name: str = "case") -> Path:
    dst = tmp_path / name
    shutil.copytree(src, dst)
    return dst


def fit_ok(staged, draft):
    assert (staged / "adapter_model.safetensors").is_file() and draft.status == "registering"
    return [("phatgoose", "gates", b"\x00" * 16, {"format": "npy"})]
