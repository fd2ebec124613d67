"""Continuous batching: one decoding loop per host; requests join between steps, leave when done.

Contract: `Engine(host, max_rows=64)`; `generate(ids, rows, max_new, temperature, top_p,
seed, on_step)` -> one `Generation` per row, blocking the caller (any thread) until its rows
are done; meanwhile the loop thread runs every submitted row together:
- a step prefills the rows that arrived since the last one (as one left-padded batch, each
  with its own routing row), merges their key/value cache into the running batch's (left
  padding aligns the lengths; the attention mask and position ids keep each row exact), then
  decodes one token for every running row in one forward whose routing holds every row's
  own mixture or gate; rows that reach eos or their `max_new` tokens leave the batch (their
  cache rows are dropped, shared left padding trimmed);
- each row keeps its own sampling (greedy at temperature 0; else temperature and top-p, with
  its own generator when it has a seed), its own stop and its own routing, so a row's tokens
  do not depend on the rows beside it nor on when it joined;
- `on_step(ids)` (streaming) sees, after every step that advanced the call, one new token
  per row of the call (rows already finished repeat eos);
- a row whose logits turn NaN/Inf fails alone (`NonFiniteOutput`); a row whose expert is
  gone fails alone (the routing names it); a step that fails inside the model fails the rows
  it held, with that error, and the loop goes on.
The loop takes the host's lock for each step, so adapter changes land between steps.
`stats`: decoding steps ("batches"), rows stepped, the most at once, and steps that held rows
of more than one call ("shared": requests met in a batch).
`supported(host)`: the model's cache is a plain `DynamicCache` of full-attention layers
(decoder models such as Llama, Qwen2, Mistral, Phi-3, GPT-2, OPT); other caches (sliding
window layers, e.g. Gemma-2) keep the static-batch path of `Host.generate`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from composer.errors import NonFiniteOutput
from composer.host.routing import use_routing


@dataclass
class Job:
    ids: list[int]
    row: object  # a mixture {expert: weight} or a Gate
    max_new: int
    temperature: float
    top_p: float
    generator: torch.Generator | None
    call: Call
    index: int
    tokens: list[int] = field(default_factory=list)
    logps: list[float] = field(default_factory=list)
    error: BaseException | None = None
    done: bool = False


@dataclass
class Call:
    """One `generate` call: its rows, their results and the caller's streaming callback."""

    rows: int
    on_step: Callable[[list[int]], None] | None
    future: Future = field(default_factory=Future)
    jobs: list[Job] = field(default_factory=list)
    pending: int = 0


def supported(host) -> bool:
    probe = DynamicCache(config=host.model.config)
    layers = getattr(probe, "layers", [])
    return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)


class Engine:
    def __init__(self, host, max_rows: int = 64):
        self.host, self.max_rows = host, max_rows
        self.eos = host.tokenizer.eos_token_id
        self.pad = host.tokenizer.pad_token_id
        self._waiting: list[Job] = []
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self.stats = {"batches": 0, "rows": 0, "max_rows": 0, "shared": 0}  # steps; shared: rows of >1 call
        # the running batch
        self._jobs: list[Job] = []
        self._cache: DynamicCache | None = None
        self._mask: torch.Tensor | None = None  # [rows, length]

    # -- submitting -----------------------------------------------------------------------
    def generate(
        self,
        ids: Sequence[list[int]],
        rows: Sequence,
        max_new: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        on_step=None,
    ) -> list:
        call = Call(len(ids), on_step)
        for i, (prompt, row) in enumerate(zip(ids, rows)):
            gen = torch.Generator().manual_seed(seed + i) if seed is not None and temperature > 0 else None
            call.jobs.append(Job(list(prompt), row, max_new, temperature, top_p, gen, call, i))
        call.pending = len(call.jobs)
        with self._wake:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, daemon=True, name=f"engine-{self.host.name}"
                )
                self._thread.start()
            self._waiting += call.jobs
            self._wake.notify()
        return call.future.result()

    # -- the loop -------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._waiting and not self._jobs:
                    self._wake.wait()
                room = self.max_rows - len(self._jobs)
                new, self._waiting = self._waiting[:room], self._waiting[room:]
            try:
                with self.host.lock, torch.no_grad():
                    if new:
                        self._admit(new)
                    if self._jobs:
                        self._count()
                        self._step()
            except BaseException as e:  # noqa: BLE001 - the rows of this step fail; the loop goes on
                for job in [*new, *self._jobs]:
                    job.error = job.error or e
                    self._finish(job)
                self._jobs, self._cache, self._mask = [], None, None

    def _count(self) -> None:
        st, n = self.stats, len(self._jobs)
        st["batches"], st["rows"], st["max_rows"] = st["batches"] + 1, st["rows"] + n, max(st["max_rows"], n)
        st["shared"] += len({id(j.call) for j in self._jobs}) > 1

    def _routing(self, jobs: Sequence[Job]):
        """The batch's routing, one row per job; a job whose row no longer resolves (its expert
        was removed or quarantined) fails alone and leaves the batch: (those jobs, the routing
        of the others)."""
        try:
            return [], self.host.routing([j.row for j in jobs])
        except KeyError:
            pass
        bad = []
        for job in jobs:
            try:
                self.host.routing([job.row])
            except KeyError as e:
                job.error = e
                self._finish(job)
                bad.append(job)
        rest = [j for j in jobs if j not in bad]
        return bad, self.host.routing([j.row for j in rest]) if rest else None

    def _admit(self, new: list[Job]) -> None:
        _, routing = self._routing(new)
        new = [j for j in new if j.error is None]
        if not new:
            return
        width = max(len(j.ids) for j in new)
        dev = self.host.device
        ids = torch.tensor([[self.pad] * (width - len(j.ids)) + j.ids for j in new], device=dev)
        mask = torch.tensor([[0] * (width - len(j.ids)) + [1] * len(j.ids) for j in new], device=dev)
        cache = DynamicCache(config=self.host.model.config)
        with use_routing(routing):
            out = self.host.model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                past_key_values=cache,
                use_cache=True,
            )
        keep = self._take(new, out.logits[:, -1])
        self._merge(new, cache, mask, keep)

    def _step(self) -> None:
        bad, routing = self._routing(self._jobs)
        if bad:
            self._drop([i for i, j in enumerate(self._jobs) if j in bad])
        if not self._jobs:
            return
        dev = self.host.device
        ids = torch.tensor([[j.tokens[-1]] for j in self._jobs], device=dev)
        mask = torch.cat([self._mask, self._mask.new_ones(len(self._jobs), 1)], dim=1)
        length = self._cache.get_seq_length()
        with use_routing(routing):
            out = self.host.model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=mask.sum(-1, keepdim=True) - 1,
                past_key_values=self._cache,
                use_cache=True,
                cache_position=torch.arange(length, length + 1, device=dev),
            )
        self._mask = mask
        keep = self._take(self._jobs, out.logits[:, -1])
        self._drop([i for i, k in enumerate(keep) if not k])

    # -- tokens ---------------------------------------------------------------------------
    def _take(self, jobs: Sequence[Job], logits: torch.Tensor) -> list[bool]:
        """Each job's next token from its logits; returns which jobs go on."""
        logits = logits.float()
        finite = torch.isfinite(logits).all(-1).tolist()
        logp = logits.log_softmax(-1)
        keep, stepped = [], {}
        for b, job in enumerate(jobs):
            if not finite[b]:
                job.error = NonFiniteOutput([job.index])
                self._finish(job)
                keep.append(False)
                continue
            token = self._sample(job, logits[b])
            job.tokens.append(token)
            job.logps.append(float(logp[b, token]))
            stepped.setdefault(id(job.call), job.call)
            done = token == self.eos or len(job.tokens) >= job.max_new
            if done:
                self._finish(job)
            keep.append(not done)
        for call in stepped.values():
            if call.on_step is not None:
                call.on_step([j.tokens[-1] if j.tokens else self.eos for j in call.jobs])
        return keep

    @staticmethod
    def _sample(job: Job, logits: torch.Tensor) -> int:
        if job.temperature <= 0:
            return int(logits.argmax())
        probs = torch.softmax(logits / job.temperature, dim=-1)
        if job.top_p < 1:
            sorted_p, order = probs.sort(descending=True)
            cut = sorted_p.cumsum(0) - sorted_p > job.top_p  # keep the smallest set reaching top_p
            sorted_p[cut] = 0
            probs = torch.zeros_like(probs).scatter_(0, order, sorted_p)
        return int(torch.multinomial(probs.cpu(), 1, generator=job.generator))

    def _finish(self, job: Job) -> None:
        if job.done:
            return
        job.done = True
        call = job.call
        call.pending -= 1
        if call.pending == 0:
            errors = [j.error for j in call.jobs if j.error is not None]
            if errors:
                call.future.set_exception(errors[0])
            else:
                call.future.set_result(call.jobs)

    # -- the batch's cache ----------------------------------------------------------------
    def _merge(self, new: list[Job], cache: DynamicCache, mask: torch.Tensor, keep: list[bool]) -> None:
        rows = [i for i, k in enumerate(keep) if k]
        if not rows:
            return
        idx = torch.tensor(rows, device=mask.device)
        new, mask = [new[i] for i in rows], mask[idx]
        for layer in cache.layers:
            layer.keys, layer.values = layer.keys[idx], layer.values[idx]
        if self._cache is None:
            self._jobs, self._cache, self._mask = new, cache, mask
            return
        length = max(self._mask.shape[1], mask.shape[1])
        pad = lambda t, dim: _left_pad(t, length, dim)
        for old, add in zip(self._cache.layers, cache.layers):
            old.keys = torch.cat([pad(old.keys, 2), pad(add.keys, 2)])
            old.values = torch.cat([pad(old.values, 2), pad(add.values, 2)])
        self._mask = torch.cat([pad(self._mask, 1), pad(mask, 1)])
        self._jobs = self._jobs + new

    def _drop(self, rows: list[int]) -> None:
        if not rows:
            return
        keep = [i for i in range(len(self._jobs)) if i not in set(rows)]
        self._jobs = [self._jobs[i] for i in keep]
        if not keep:
            self._cache, self._mask = None, None
            return
        idx = torch.tensor(keep, device=self._mask.device)
        mask = self._mask[idx]
        first = int(mask.any(0).nonzero()[0])  # left padding every remaining row has: trimmed
        self._mask = mask[:, first:]
        for layer in self._cache.layers:
            layer.keys, layer.values = layer.keys[idx, :, first:], layer.values[idx, :, first:]


def _left_pad(t: torch.Tensor, length: int, dim: int) -> torch.Tensor:
    missing = length - t.shape[dim]
    if missing <= 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([t.new_zeros(shape), t], dim=dim)
