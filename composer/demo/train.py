"""Training helpers for the demo ocean: tokenizer, base LM, LoRA experts, exact-match eval.

Contract:
- `train_tokenizer(texts)` -> a byte-level BPE `PreTrainedTokenizerFast` with bos/eos/pad
  and a chat template that renders a conversation as `<s>{user text}\n`: the demo
  models answer after the newline and stop at `</s>`.
- `fit(model, tok, examples, steps=..)` trains whatever parameters of `model` require grad
  (all of a base model, only LoRA tensors of a PEFT model) with the LM loss on answer
  tokens only, showing a progress bar, for `steps` steps or until `done()` says the model
  is good enough; returns the last smoothed loss. The examples are tokenized once; each
  step's sample is packed into as few rows as fit (`_pack`: block-diagonal causal mask,
  positions restarting per example) and the LM head runs on answer tokens only
  (`lm_loss`): the padded batch's loss and gradients, 1.8–1.9x (base) and 1.3x (LoRA)
  faster per step on the demo's short prompts (`bench/training.py`).
- `exact_match(model, tok, examples)` greedy-decodes every prompt and returns the fraction
  whose answer matches exactly (whitespace-normalised); `token_accuracy` is the
  teacher-forced share of answer tokens predicted right (finer, for short trainings).
Prompts are formatted by `format_prompt`, the same rendering as the chat template.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from composer.demo.skills import Example
from composer.progress import progress

SPECIALS = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"}
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}{{ m['content'] }}"
    "{% endif %}{% endfor %}{{ '\n' }}"
)


def format_prompt(prompt: str, tok: PreTrainedTokenizerFast) -> str:
    return f"{tok.bos_token}{prompt}\n"


def train_tokenizer(texts: Sequence[str], vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIALS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(texts, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, **SPECIALS, model_max_length=128)
    tok.chat_template = CHAT_TEMPLATE
    return tok


def base_config(
    tok: PreTrainedTokenizerFast, hidden: int = 128, layers: int = 4, heads: int = 4
) -> LlamaConfig:
    """The demo base LM's architecture for the tokenizer `tok`."""
    return LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=128,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )


def make_base(tok: PreTrainedTokenizerFast, seed: int = 0, **arch) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    return LlamaForCausalLM(base_config(tok, **arch))


def _encode(tok, examples: Sequence[Example]) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids of prompt + answer + eos per example, and labels = -100 but on answer and eos."""
    seqs, labels = [], []
    for ex in examples:
        p = tok(format_prompt(ex.prompt, tok), add_special_tokens=False)["input_ids"]
        a = tok(" " + ex.answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        seqs.append(p + a)
        labels.append([-100] * len(p) + a)
    return seqs, labels


def _batch(tok, examples: Sequence[Example]) -> dict[str, torch.Tensor]:
    """Right-padded input ids with labels = -100 everywhere but the answer and eos."""
    return _pad(*_encode(tok, examples), tok.pad_token_id)


def _pad(seqs: list[list[int]], labels: list[list[int]], pad: int) -> dict[str, torch.Tensor]:
    """`_batch` of already encoded examples."""
    n = max(map(len, seqs))
    ids = torch.tensor([s + [pad] * (n - len(s)) for s in seqs])
    lab = torch.tensor([s + [-100] * (n - len(s)) for s in labels])
    return {"input_ids": ids, "attention_mask": (ids != pad).long(), "labels": lab}


def _packed(tok, examples: Sequence[Example], dtype=torch.float32) -> dict[str, torch.Tensor]:
    """The same examples as `_batch`, packed first-fit (longest first) into rows as long as
    the longest example: position ids restart at each example and a 4D additive mask keeps
    attention causal within each example, so loss and gradients equal the padded batch's
    (the demo's padded batches are about half padding). Padding attends to itself only."""
    return _pack(*_encode(tok, examples), tok.pad_token_id, dtype)


def _pack(
    seqs: list[list[int]], labels: list[list[int]], pad: int, dtype=torch.float32
) -> dict[str, torch.Tensor]:
    """`_packed` of already encoded examples (`fit` encodes its examples once, not per step)."""
    n = max(map(len, seqs))
    rows: list[list[int]] = []  # example indices per row
    room: list[int] = []
    for i in sorted(range(len(seqs)), key=lambda i: -len(seqs[i])):
        r = next((r for r, free in enumerate(room) if free >= len(seqs[i])), None)
        if r is None:
            rows.append([])
            room.append(n)
            r = len(rows) - 1
        rows[r].append(i)
        room[r] -= len(seqs[i])
    ids, lab, pos, seg = [], [], [], []  # per row; a segment per position, padding's -1 - its column
    for members in rows:
        r_ids, r_lab, r_pos, r_seg = [], [], [], []
        for j, i in enumerate(members):
            r_ids += seqs[i]
            r_lab += labels[i]
            r_pos += range(len(seqs[i]))
            r_seg += [j] * len(seqs[i])
        free = n - len(r_ids)
        ids.append(r_ids + [pad] * free)
        lab.append(r_lab + [-100] * free)
        pos.append(r_pos + [0] * free)
        seg.append(r_seg + list(range(-1 - len(r_seg), -1 - n, -1)))
    ids, lab, pos, seg = (torch.tensor(t) for t in (ids, lab, pos, seg))
    allowed = (seg[:, :, None] == seg[:, None, :]) & torch.ones(n, n, dtype=torch.bool).tril()
    mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
    return {"input_ids": ids, "attention_mask": mask[:, None], "position_ids": pos, "labels": lab}


def lm_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The causal LM loss of `model(**batch).loss` (mean over labelled tokens), with the LM
    head applied to labelled positions only: a third of the head's work on the demo's
    prompts. `model` is a decoder-only HF model (`.model` + `.lm_head`) or a PEFT model of one."""
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    hidden = lm.model(**inputs).last_hidden_state[:, :-1]
    labels = batch["labels"][:, 1:]
    keep = labels != -100
    return torch.nn.functional.cross_entropy(lm.lm_head(hidden[keep]).float(), labels[keep])


def fit(
    model,
    tok,
    examples: Sequence[Example],
    steps: int,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    desc: str = "train",
    done: Callable[[], bool] | None = None,
    every: int = 50,
    min_steps: int = 0,
) -> float:
    """Train for `steps` steps, or until `done()` (asked every `every` steps from `min_steps`
    on, model in eval mode) says the model is good enough."""
    rng = random.Random(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: min(1.0, (i + 1) / max(1, steps // 10)) * max(0.05, 1 - i / steps)
    )
    seqs, labels = _encode(tok, examples)  # once: sampling indices draws what sampling examples would
    model.train()
    ema = None
    bar = progress(range(steps), desc=desc)
    for i in bar:
        pick = rng.sample(range(len(seqs)), min(batch_size, len(seqs)))
        loss = lm_loss(model, _pack([seqs[j] for j in pick], [labels[j] for j in pick], tok.pad_token_id))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        ema = loss.item() if ema is None else 0.9 * ema + 0.1 * loss.item()
        bar.set_postfix(loss=f"{ema:.3f}", refresh=False)
        if done is not None and (i + 1) % every == 0 and min_steps <= i + 1 < steps:
            model.eval()
            if done():
                break
            model.train()
    model.eval()
    return float(ema)


@torch.no_grad()
def generate(
    model, tok, prompts: Sequence[str], max_new_tokens: int = 12, batch_size: int = 128
) -> list[str]:
    """Greedy decoding, left-padded batches, stop at eos."""
    out: list[str] = []
    tok.padding_side = "left"
    for i in range(0, len(prompts), batch_size):
        chunk = [format_prompt(p, tok) for p in prompts[i : i + batch_size]]
        enc = tok(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
        gen = model.generate(
            **enc,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
        )
        out += tok.batch_decode(gen[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    return [o.strip() for o in out]


@torch.no_grad()
def token_accuracy(model, tok, examples: Sequence[Example], batch_size: int = 256) -> float:
    """Teacher-forced accuracy on answer tokens (and eos): finer-grained than exact match."""
    hit = total = 0
    for i in range(0, len(examples), batch_size):
        b = _batch(tok, examples[i : i + batch_size])
        pred = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits[:, :-1].argmax(-1)
        lab = b["labels"][:, 1:]
        mask = lab != -100
        hit += int((pred[mask] == lab[mask]).sum())
        total += int(mask.sum())
    return hit / max(1, total)


def exact_match(model, tok, examples: Sequence[Example]) -> float:
    preds = generate(model, tok, [e.prompt for e in examples])
    return sum(" ".join(p.split()) == e.answer for p, e in zip(preds, examples)) / max(1, len(examples))
