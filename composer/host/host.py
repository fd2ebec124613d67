"""The host: one base causal LM serving every LoRA expert of that base at once.

Contract:
- `Host.load(path, device=None, dtype=None)` loads a local HF causal LM + tokenizer
  (safetensors only: no pickle, no remote code, no download) on `resolve(device, dtype)`;
  None reads the settings ($COMPOSER_DEVICE / $COMPOSER_DTYPE, both "auto" by default):
  "auto" is CUDA when available (bfloat16 where the GPU has it), else the CPU in float32.
  Every tensor the host, its layers, gates and routings make lives on the model's device
  and dtype (routing scores and softmax in float32); inputs are moved there, outputs back.
- (`composer.host.slots`) `add_adapter(name, path)` installs a PEFT LoRA adapter (plain, rsLoRA, rank/alpha
  patterns, DoRA, lora_B biases, trained module biases; on Linear and Conv1D modules: see
  `registry.lora`) into mixture-of-LoRA layers, wrapping the modules it changes on first
  use, without reloading the base; it checks every module and shape before touching the
  model, so a bad adapter changes nothing. `memory()` sums the layers' adapter pools.
  `remove_adapter(name)` frees its slot. Other experts' outputs are unaffected by either.
- `set_vectors(name, kind, {module: vector})` installs an expert's token-gate vectors
  (PHATGOOSE gates, Arrow prototypes), already prepared for the kind's score, checked
  against the modules it adapts.
- `logits(...)` and `generate(...)` take one row spec per prompt: a mixture
  (`{expert: weight}`, empty = base model) or a `Gate` (per-token routing; its `bias` and
  `experts` name experts), or any `Routing`; rows routed differently share one forward
  pass (heterogeneous batch). `trace=` records the gated decisions (introspection).
  `loglik(prompts, continuations, rows)` scores continuations (multiple choice).
  `generate` returns text, token ids, the mean token log-likelihood of the completion
  (used by output ensembles), a finish reason and the prompt's token count; `on_step`
  sees each decoding step's new token per row (streaming, `composer.host.stream`). A prompt
  that leaves no room in the model's context (`context`) is refused with `ContextTooLong`
  before any work; one that leaves less than `max_new_tokens` gets what is left with
  `fit_context=True` (the default), and is refused with `fit_context=False` (a client that
  asked for that many tokens, as vLLM and OpenAI do). Logits that turn NaN or Inf in a
  row's answer are a `NonFiniteOutput` naming the rows, never a silently garbled text.
- A prompt is a string, or a list of chat messages (`{"role", "content"}`) rendered with
  the tokenizer's chat template.
A re-entrant lock serialises model use with adapter changes, so a registration never
lands half-way through a request.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.generation.streamers import BaseStreamer

from composer.errors import ComposerError, NonFiniteOutput
from composer.host.gates import Gate, MixedRouting, RoutingTrace
from composer.host.layer import MoLoRALinear
from composer.host.routing import Routing, SequenceRouting, use_routing
from composer.host.slots import AdapterSlots

Mixture = Mapping[str, float]
Row = Mixture | Gate
Prompt = str | Sequence[Mapping[str, str]]  # text, or chat messages


class ContextTooLong(ComposerError):
    """A prompt plus the tokens asked for do not fit the model's context."""


@dataclass
class Generation:
    text: str
    token_ids: list[int]
    logprob: float  # mean log-likelihood per generated token (eos included)
    finish_reason: str  # "stop" (eos) | "length"
    prompt_tokens: int = 0


DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def resolve(device: str | torch.device | None = "auto", dtype: str | torch.dtype | None = "auto"):
    """(torch.device, torch.dtype) for settings' values: device "auto" is CUDA when available,
    else the CPU; dtype "auto" is bfloat16 on a GPU that has it, else float32."""
    if device in (None, "auto"):
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        dev = torch.device(device)
    if isinstance(dtype, torch.dtype):
        return dev, dtype
    if dtype in (None, "auto"):
        return dev, torch.bfloat16 if dev.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be auto or one of {', '.join(DTYPES)}, not {dtype!r}")
    return dev, DTYPES[dtype]


class Host(AdapterSlots):
    def __init__(self, model: nn.Module, tokenizer, name: str = "base", continuous: bool = True):
        self.model, self.tokenizer, self.name = model.eval(), tokenizer, name
        self.continuous, self._engine = continuous, False
        self.slots: dict[str, int] = {}
        self.layers: dict[str, MoLoRALinear] = {}
        self.lock = threading.RLock()
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token

    @classmethod
    def load(
        cls,
        path: str | Path,
        name: str = "base",
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
    ) -> Host:
        if device is None or dtype is None:
            from composer.settings import Settings

            env = Settings.from_env()
            device, dtype = device or env.device, dtype or env.dtype
        dev, dt = resolve(device, dtype)
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=dt, trust_remote_code=False, use_safetensors=True
        )
        return cls(model.to(dev), AutoTokenizer.from_pretrained(path, trust_remote_code=False), name)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def experts(self) -> list[str]:
        return sorted(self.slots)

    @property
    def context(self) -> int | None:
        """Tokens the model attends over (prompt + completion), when its config or tokenizer says."""
        limits = [
            getattr(self.model.config, "max_position_embeddings", None),
            getattr(self.tokenizer, "model_max_length", None),
        ]
        limits = [n for n in limits if isinstance(n, int) and 0 < n < 10**8]  # tokenizers say 1e30 for "none"
        return min(limits, default=None)

    def _room(self, enc, max_new_tokens: int, fit: bool) -> int:
        """`max_new_tokens`, or what the context leaves after the longest prompt (see the contract)."""
        ctx = self.context
        longest = int(enc["attention_mask"].sum(1).max())
        if ctx is None or longest + max_new_tokens <= ctx or (fit and longest < ctx):
            return max_new_tokens if ctx is None else min(max_new_tokens, ctx - longest)
        raise ContextTooLong(
            f"this model's maximum context length is {ctx} tokens; the request asks for "
            f"{longest + max_new_tokens} ({longest} in the prompt, {max_new_tokens} to generate): "
            "shorten the prompt or max_tokens"
        )

    @property
    def engine(self):
        """The continuous-batching loop (`composer.host.engine`), or None where the model's cache
        does not support it (or `continuous=False`): `generate` then runs one static batch."""
        if self._engine is False:
            from composer.host.engine import Engine, supported

            self._engine = Engine(self) if self.continuous and supported(self) else None
        return self._engine

    def _continuous(self, enc, mixtures, max_new: int, temperature: float, top_p: float, seed, on_step):
        rows = list(mixtures) if mixtures is not None else [{}] * len(enc["input_ids"])
        if len(rows) != len(enc["input_ids"]):
            raise ValueError(f"{len(rows)} row specs for {len(enc['input_ids'])} rows")
        for row in rows:  # unknown experts are the caller's error, before any work
            self.routing([row])
        ids = [r[m.bool()].tolist() for r, m in zip(enc["input_ids"], enc["attention_mask"])]
        jobs = self.engine.generate(ids, rows, max_new, temperature, top_p, seed, on_step)
        return _generations(self.tokenizer, jobs, [len(i) for i in ids])

    def routed(self, routing: Routing):
        """Context manager: forwards of this model inside it use `routing` (e.g. a fitter's own)."""
        return use_routing(routing)

    # -- routing ----------------------------------------------------------------------------
    def _slot(self, name: str) -> int:
        if name not in self.slots:
            raise KeyError(f"expert not loaded on host {self.name!r}: {name}")
        return self.slots[name]

    def routing(
        self, rows: Sequence[Row], trace: RoutingTrace | None = None
    ) -> SequenceRouting | MixedRouting:
        out: list = []
        for row in rows:
            if isinstance(row, Gate):
                out.append(
                    replace(
                        row,
                        bias={self._slot(e): float(b) for e, b in row.bias.items()},
                        experts=None if row.experts is None else [self._slot(e) for e in row.experts],
                    )
                )
                continue
            unknown = [e for e in row if e not in self.slots]
            if unknown:
                raise KeyError(f"expert(s) not loaded on host {self.name!r}: {', '.join(unknown)}")
            out.append([(self.slots[e], float(w)) for e, w in row.items() if w != 0])
        if trace is None and not any(isinstance(r, Gate) for r in out):
            return SequenceRouting(out, device=self.device)
        return MixedRouting(out, trace, device=self.device)

    def _resolve(
        self, n: int, rows: Sequence[Row] | None, routing: Routing | None, trace: RoutingTrace | None = None
    ) -> Routing | None:
        if routing is not None:
            return routing
        rows = list(rows) if rows is not None else [{}] * n
        if len(rows) != n:
            raise ValueError(f"{len(rows)} row specs for {n} rows")
        return self.routing(rows, trace)

    # -- inference --------------------------------------------------------------------------
    @torch.no_grad()
    def logits(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        mixtures: Sequence[Row] | None = None,
        routing: Routing | None = None,
        trace: RoutingTrace | None = None,
    ) -> torch.Tensor:
        dev = self.device
        mask = attention_mask.to(dev) if attention_mask is not None else None
        with self.lock, use_routing(self._resolve(len(input_ids), mixtures, routing, trace)):
            return self.model(input_ids=input_ids.to(dev), attention_mask=mask).logits

    @torch.no_grad()
    def loglik(
        self,
        prompts: Sequence[Prompt],
        continuations: Sequence[str],
        mixtures: Sequence[Row] | None = None,
        chat: bool = True,
    ) -> list[float]:
        """Sum log-probability of each continuation right after its rendered prompt (multiple choice)."""
        tok = self.tokenizer
        special = not (chat and tok.chat_template)
        rows, n_cont = [], []
        for p, c in zip(prompts, continuations, strict=True):
            head = self.render(p, chat)
            ids = tok(head + c, add_special_tokens=special)["input_ids"]
            rows.append(ids)
            n_cont.append(max(1, len(ids) - len(tok(head, add_special_tokens=special)["input_ids"])))
        width = max(map(len, rows))
        ids = torch.tensor([[tok.pad_token_id] * (width - len(r)) + r for r in rows])
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
        logp = self.logits(ids, mask, mixtures).float().log_softmax(-1)[:, :-1].cpu()
        tok_logp = logp.gather(-1, ids[:, 1:, None])[..., 0]
        return [float(tok_logp[b, width - 1 - n :].sum()) for b, n in enumerate(n_cont)]

    def encode(self, prompts: Sequence[Prompt], chat: bool = True):
        """Token ids of the rendered prompts, left-padded (what generation and gating see)."""
        tok = self.tokenizer
        tok.padding_side = "left"
        return tok(
            [self.render(p, chat) for p in prompts],
            return_tensors="pt",
            padding=True,
            add_special_tokens=not (chat and tok.chat_template),
        )

    def render(self, prompt: Prompt, chat: bool = True) -> str:
        tok = self.tokenizer
        messages = (
            [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]
        )
        if chat and tok.chat_template:
            return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        if isinstance(prompt, str):
            return prompt
        return "\n".join(m["content"] for m in messages)  # no template: the turns as plain text

    @torch.no_grad()
    def generate(
        self,
        prompts: Sequence[Prompt],
        mixtures: Sequence[Row] | None = None,
        routing: Routing | None = None,
        max_new_tokens: int = 32,
        temperature: float = 0.0,
        top_p: float = 1.0,
        chat: bool = True,
        seed: int | None = None,
        trace: RoutingTrace | None = None,
        on_step: Callable[[list[int]], None] | None = None,
        fit_context: bool = True,
    ) -> list[Generation]:
        if not prompts:
            return []
        tok = self.tokenizer
        enc = self.encode(prompts, chat)
        max_new_tokens = self._room(enc, max_new_tokens, fit_context)
        if trace is None and routing is None and self.engine is not None:
            return self._continuous(enc, mixtures, max_new_tokens, temperature, top_p, seed, on_step)
        enc = {k: v.to(self.device) for k, v in enc.items()}
        sample = temperature > 0
        if seed is not None:
            torch.manual_seed(seed)
        with self.lock, use_routing(self._resolve(len(prompts), mixtures, routing, trace)):
            out = self.model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=sample,
                temperature=temperature if sample else None,
                top_p=top_p if sample else None,
                top_k=None,
                pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id,
                return_dict_in_generate=True,
                output_logits=True,
                streamer=_StepStreamer(on_step) if on_step else None,
            )
        new = out.sequences[:, enc["input_ids"].shape[1] :]
        steps = torch.stack(out.logits, 1).float()
        logp = steps.log_softmax(-1).gather(-1, new.unsqueeze(-1)).squeeze(-1).cpu()
        finite = torch.isfinite(steps).all(-1).cpu()  # [rows, steps]
        new = new.cpu()
        results, broken = [], []
        for b in range(len(prompts)):
            ids = new[b].tolist()
            stop = tok.eos_token_id in ids
            n = ids.index(tok.eos_token_id) + 1 if stop else len(ids)
            if not bool(finite[b, :n].all()):
                broken.append(b)
            text = tok.decode(ids[:n], skip_special_tokens=True).strip()
            results.append(
                Generation(
                    text,
                    ids[:n],
                    float(logp[b, :n].mean()) if n else 0.0,
                    "stop" if stop else "length",
                    int(enc["attention_mask"][b].sum()),
                )
            )
        if broken:
            raise NonFiniteOutput(broken)
        return results


def _generations(tok, jobs, prompt_tokens: list[int]) -> list[Generation]:
    out = []
    for job, n_prompt in zip(jobs, prompt_tokens):
        stop = bool(job.tokens) and job.tokens[-1] == tok.eos_token_id
        text = tok.decode(job.tokens, skip_special_tokens=True).strip()
        logprob = sum(job.logps) / len(job.logps) if job.logps else 0.0
        out.append(Generation(text, list(job.tokens), logprob, "stop" if stop else "length", n_prompt))
    return out


class _StepStreamer(BaseStreamer):
    """transformers' streamer protocol: `put` gets the prompt ids once, then each step's new ids."""

    def __init__(self, on_step: Callable[[list[int]], None]):
        self.on_step, self.started = on_step, False

    def put(self, value: torch.Tensor) -> None:
        if self.started:
            self.on_step(value.reshape(-1).tolist())
        self.started = True

    def end(self) -> None:
        pass
