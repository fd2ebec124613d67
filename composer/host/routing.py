"""How a forward pass learns which experts each token uses.

Contract: a routing is installed for the duration of a forward/generate call with
`use_routing(r)` (a context variable, so concurrent threads/tasks never see each other's
routing). Every mixture-of-LoRA layer asks it `assign(layer, x)` for the token → expert
assignment of its input `x`, flattened to [N, d_in] with tokens in order — whatever shape
the module saw ([batch, seq, d] in most models, [batch*seq, d] where a model flattens tokens
before its MLP, as OPT does): the N tokens split evenly into the batch's rows
(`tokens_per_row`; anything else is an error naming the counts). It gets back
`(slots, weights)`, both [N, k]: expert slot ids (-1 = unused) and mixture weights; or
`(slot, weights)` with a plain int slot and weights [N, 1]: every token through that one
expert (PHATGOOSE's gate fitting; no per-token dispatch). `None` means "base only".

Routings hold their tensors on the device they are built for (the host's).
`SequenceRouting` carries per-sequence weights (select, merge): row b uses the same
experts and weights for every token, in every layer, at every decoding step; its
`per_row()` hands layers that [batch, k] assignment directly (no per-token dispatch), and
`host_slots` the same slots as host lists, so a layer never waits on the device to learn
which experts a batch uses. Token-level
gates (PHATGOOSE, Arrow, GLIDER) implement the same `assign` method from the activations.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Protocol

import torch


class Routing(Protocol):
    def assign(self, layer, x: torch.Tensor) -> tuple[torch.Tensor | int, torch.Tensor] | None: ...


_CURRENT: ContextVar[Routing | None] = ContextVar("composer_routing", default=None)


def current_routing() -> Routing | None:
    return _CURRENT.get()


@contextmanager
def use_routing(routing: Routing | None) -> Iterator[None]:
    token = _CURRENT.set(routing)
    try:
        yield
    finally:
        _CURRENT.reset(token)


class SequenceRouting:
    """Per-row mixtures: `rows[b]` is a list of (slot, weight) pairs; empty = base model.
    `width` reserves room for more experts per token (subclasses that add gated rows)."""

    def __init__(self, rows: Sequence[Sequence[tuple[int, float]]], width: int = 1, device=None):
        k = max((len(r) for r in rows), default=0)
        slots = torch.full((len(rows), max(k, width, 1)), -1, dtype=torch.long)
        weights = torch.zeros((len(rows), max(k, width, 1)))
        for b, row in enumerate(rows):
            for j, (slot, w) in enumerate(row):
                slots[b, j], weights[b, j] = slot, w
        self.slots, self.weights = slots.to(device), weights.to(device)  # built on the CPU, moved once
        self.host_slots = slots.tolist()  # [batch][k] on the host: what layers decide from, no device read
        self.empty = k == 0

    def per_row(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(slots, weights) per row, [batch, k], when every token of a row is routed alike
        (layers then skip per-token dispatch); None when routing is per token or empty."""
        return None if self.empty else (self.slots, self.weights)

    def tokens_per_row(self, n: int) -> int:
        """Tokens of each row in a module input of `n` tokens (rows are contiguous, in order)."""
        rows = self.slots.shape[0]
        if n % rows:
            raise ValueError(f"a module saw {n} tokens, which do not split into the batch's {rows} rows")
        return n // rows

    def assign(self, layer, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self.empty:
            return None
        T = self.tokens_per_row(x.shape[0])
        return (
            self.slots.repeat_interleave(T, dim=0),
            self.weights.to(x.dtype).repeat_interleave(T, dim=0),
        )
