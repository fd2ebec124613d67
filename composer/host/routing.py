"""How a forward pass learns which experts each token uses.

Contract: a routing is installed for the duration of a forward/generate call with
`use_routing(r)` (a context variable, so concurrent threads/tasks never see each other's
routing). Every mixture-of-LoRA layer asks it `assign(layer, x)` for the token → expert
assignment of its input `x` ([batch, seq, d_in]) and gets back `(slots, weights)`, both
[batch*seq, k]: expert slot ids (-1 = unused) and mixture weights. `None` means "base only".

`SequenceRouting` carries per-sequence weights (select, merge): row b uses the same
experts and weights for every token, in every layer, at every decoding step; its
`per_row()` hands layers that [batch, k] assignment directly (no per-token dispatch). Token-level
gates (PHATGOOSE, Arrow, GLIDER) implement the same `assign` method from the activations.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Protocol

import torch


class Routing(Protocol):
    def assign(self, layer, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None: ...


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

    def __init__(self, rows: Sequence[Sequence[tuple[int, float]]], width: int = 1):
        k = max((len(r) for r in rows), default=0)
        self.slots = torch.full((len(rows), max(k, width, 1)), -1, dtype=torch.long)
        self.weights = torch.zeros((len(rows), max(k, width, 1)))
        for b, row in enumerate(rows):
            for j, (slot, w) in enumerate(row):
                self.slots[b, j], self.weights[b, j] = slot, w
        self.empty = k == 0

    def per_row(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(slots, weights) per row, [batch, k], when every token of a row is routed alike
        (layers then skip per-token dispatch); None when routing is per token or empty."""
        return None if self.empty else (self.slots, self.weights)

    def assign(self, layer, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self.empty:
            return None
        if x.shape[0] != self.slots.shape[0]:
            raise ValueError(f"routing has {self.slots.shape[0]} rows but the batch has {x.shape[0]}")
        per_row = x[0].numel() // x.shape[-1]  # tokens per row
        return (
            self.slots.repeat_interleave(per_row, dim=0),
            self.weights.to(x.dtype).repeat_interleave(per_row, dim=0),
        )
