"""Tiny random models of several architectures, and PEFT LoRA adapters of them, for the
compatibility matrix (tests/composer_tests/host/test_compat.py).

Contract:
- `ARCHS`: the architectures (HF `model_type`s) the matrix covers: llama, qwen2, mistral, phi3
  (fused `qkv_proj` / `gate_up_proj`), gemma2, gpt2 (projections are
  `transformers.pytorch_utils.Conv1D`, weight [in, out]) and opt (`fc1`/`fc2` see tokens
  flattened to [batch*seq, d]).
- `tiny_arch(model_type, out_dir) -> out_dir`: a seeded (same bytes every call) random-weight
  model, hidden 32, 2 layers, vocab `VOCAB`, saved with `save_pretrained` (safetensors), plus a
  tokenizer beside it: one token per character of `CHARS` (vocab = the model's, pad/bos/eos =
  `PAD`/`BOS`/`EOS`, also set in the model config; no chat template). It is a byte-level BPE
  without merges, not WordLevel, because transformers 5's AutoTokenizer rebuilds a qwen2
  tokenizer as `Qwen2Tokenizer` (byte-level BPE from tokenizer.json's vocab and merges), which
  turns a WordLevel vocab's words into nothing. `Host.load(out_dir)` and
  `Registry.register(out_dir, name, kind="base")` accept it.
- `ADAPTER_CONFIGS`: config name -> LoraConfig kwargs; a value that differs per architecture is
  a `PerArch` ({model_type: value}). `lora_config(name, model_type)` resolves one into
  plain LoraConfig kwargs (gpt2 gets `fan_in_fan_out=True` everywhere: PEFT requires it for
  Conv1D).
- `make_adapter(base_dir, out_dir, seed=0, **lora_config) -> out_dir`: a PEFT LoRA of the base
  with `init_lora_weights=False` (A and B random, seeded), and every other tensor PEFT saves
  (trainable biases of `bias="lora_only"/"all"`, DoRA magnitudes, `lora_bias` biases of lora_B)
  perturbed with seeded noise so that it matters (`perturb=False`: left as PEFT made them, the
  same A and B); saved with `save_pretrained`.
- `tiny_config(model_type)`: the config `tiny_arch` builds from.
- `text(n, seed)`: n random characters of `CHARS` (a prompt of n tokens, no spaces).
"""

from __future__ import annotations

import string
from pathlib import Path

import torch

ARCHS = ("llama", "qwen2", "mistral", "phi3", "gemma2", "gpt2", "opt")
SPECIALS = ["[UNK]", "[PAD]", "<s>", "</s>"]
CHARS = string.ascii_lowercase + string.ascii_uppercase + string.digits
VOCAB, PAD, BOS, EOS = len(SPECIALS) + len(CHARS), 1, 2, 3

# Config fields per architecture (the rest are the library's defaults, dropout off).
_COMMON = {
    "vocab_size": VOCAB,
    "pad_token_id": PAD,
    "bos_token_id": BOS,
    "eos_token_id": EOS,
    "initializer_range": 0.2,  # decisive logits: greedy decoding far from ties
}
_DECODER = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 8,
    "max_position_embeddings": 128,
}
_FIELDS: dict[str, dict] = {
    "llama": _DECODER,
    "qwen2": _DECODER,
    "mistral": _DECODER,
    "phi3": {**_DECODER, "num_key_value_heads": 4, "original_max_position_embeddings": 128},
    "gemma2": {
        **_DECODER,
        "query_pre_attn_scalar": 8,
        "sliding_window": 16,
        "layer_types": ["sliding_attention", "full_attention"],
    },
    "gpt2": {
        "n_embd": 32,
        "n_inner": 64,
        "n_layer": 2,
        "n_head": 4,
        "n_positions": 128,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "resid_pdrop": 0.0,
    },
    "opt": {
        "hidden_size": 32,
        "word_embed_proj_dim": 32,
        "ffn_dim": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": 128,
        "dropout": 0.0,
    },
}


class PerArch(dict):
    """A LoraConfig value that differs per architecture: {model_type: value}."""


ATTENTION = PerArch(
    {
        **{mt: ["q_proj", "k_proj", "v_proj", "o_proj"] for mt in ("llama", "qwen2", "mistral", "gemma2")},
        "phi3": ["qkv_proj", "o_proj"],
        "gpt2": ["c_attn", "attn.c_proj"],
        "opt": ["q_proj", "k_proj", "v_proj", "out_proj"],
    }
)
MLP = PerArch(
    {
        **{mt: ["gate_proj", "up_proj", "down_proj"] for mt in ("llama", "qwen2", "mistral", "gemma2")},
        "phi3": ["gate_up_proj", "down_proj"],
        "gpt2": ["c_fc", "mlp.c_proj"],
        "opt": ["fc1", "fc2"],
    }
)
# rank_pattern / alpha_pattern keys: one module of one layer, and one module name everywhere.
_LAYER0_Q = {
    **{mt: "layers.0.self_attn.q_proj" for mt in ("llama", "qwen2", "mistral", "gemma2", "opt")},
    "phi3": "layers.0.self_attn.qkv_proj",
    "gpt2": "h.0.attn.c_attn",
}
# PEFT matches modules_to_save by suffix without a dot: "norm" would also take every layer's norms.
FINAL_NORM = PerArch(
    {
        **{mt: ["model.norm"] for mt in ("llama", "qwen2", "mistral", "phi3", "gemma2")},
        "gpt2": ["transformer.ln_f"],
        "opt": ["decoder.final_layer_norm"],
    }
)
ATTN_MLP = PerArch({mt: ATTENTION[mt] + MLP[mt] for mt in ARCHS})

ADAPTER_CONFIGS: dict[str, dict] = {
    "attention": {"r": 4, "lora_alpha": 8, "target_modules": ATTENTION},
    "all-linear": {"r": 4, "lora_alpha": 16, "target_modules": "all-linear"},
    "rslora": {"r": 8, "lora_alpha": 8, "use_rslora": True, "target_modules": ATTN_MLP},
    "rank-alpha-pattern": {
        "r": 4,
        "lora_alpha": 8,
        "target_modules": ATTN_MLP,
        "rank_pattern": PerArch({mt: {_LAYER0_Q[mt]: 2, MLP[mt][-1]: 6} for mt in ARCHS}),
        "alpha_pattern": PerArch({mt: {ATTENTION[mt][-1]: 32, _LAYER0_Q[mt]: 3} for mt in ARCHS}),
    },
    "bias-lora-only": {"r": 4, "lora_alpha": 8, "target_modules": ATTN_MLP, "bias": "lora_only"},
    "bias-all": {"r": 4, "lora_alpha": 8, "target_modules": ATTENTION, "bias": "all"},
    "dora": {"r": 4, "lora_alpha": 8, "target_modules": ATTN_MLP, "use_dora": True},
    "lora-bias": {"r": 4, "lora_alpha": 8, "target_modules": ATTENTION, "lora_bias": True},
    "modules-to-save": {"r": 4, "lora_alpha": 8, "target_modules": ATTENTION, "modules_to_save": FINAL_NORM},
}


def lora_config(name: str, model_type: str) -> dict:
    """`ADAPTER_CONFIGS[name]` for one architecture: per-arch values picked, gpt2's Conv1D flag set."""
    kw = {k: v[model_type] if isinstance(v, PerArch) else v for k, v in ADAPTER_CONFIGS[name].items()}
    if model_type == "gpt2":
        kw["fan_in_fan_out"] = True
    return kw


def text(n: int, seed: int) -> str:
    """n random in-vocabulary characters, no spaces: n tokens with every tokenizer class."""
    g = torch.Generator().manual_seed(seed)
    return "".join(CHARS[int(i)] for i in torch.randint(len(CHARS), (n,), generator=g))


def _save_tokenizer(out_dir: Path) -> None:
    """One token per character: a byte-level BPE without merges (see the contract)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(SPECIALS + list(CHARS))}
    tok = Tokenizer(models.BPE(vocab, [], unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", bos_token="<s>", eos_token="</s>"
    ).save_pretrained(out_dir)


def tiny_config(model_type: str):
    from transformers import AutoConfig

    return AutoConfig.for_model(model_type, **_COMMON, **_FIELDS[model_type])


def tiny_arch(model_type: str, out_dir: str | Path) -> Path:
    from transformers import AutoModelForCausalLM

    out_dir = Path(out_dir)
    with torch.random.fork_rng():  # seeded, without touching the caller's random state
        torch.manual_seed(ARCHS.index(model_type))
        model = AutoModelForCausalLM.from_config(tiny_config(model_type))
        with torch.no_grad():  # norms and biases start at 1 / 0: make them matter too
            for p in model.parameters():
                if p.dim() == 1:
                    p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(out_dir)
    _save_tokenizer(out_dir)
    return out_dir


def make_adapter(
    base_dir: str | Path, out_dir: str | Path, seed: int = 0, perturb: bool = True, **lora_config
) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    lora_config.setdefault("task_type", "CAUSAL_LM")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        pm = get_peft_model(model, LoraConfig(init_lora_weights=False, **lora_config))
    g = torch.Generator().manual_seed(10_000 + seed)
    with torch.no_grad():
        for name, p in pm.named_parameters() if perturb else ():
            if "lora_magnitude_vector" in name:  # DoRA: m starts at ||W + sBA||, DoRA would equal LoRA
                p.mul_(1 + 0.3 * torch.randn(p.shape, generator=g))
            elif p.requires_grad and (name.endswith("bias") or "modules_to_save" in name):
                p.add_(0.3 * torch.randn(p.shape, generator=g))  # base biases (bias=...), lora_B biases
    pm.save_pretrained(out_dir)
    return Path(out_dir)
