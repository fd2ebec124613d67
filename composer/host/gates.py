"""Token-level gates: which experts each token uses, decided inside every adapted module.

Contract:
- An expert carries, per module it adapts, one vector per gate *kind* (e.g. a PHATGOOSE gate
  vector, an Arrow prototype; a kind with several rows per expert, SpectR's spectrum, stores
  them flattened, [m·d_in], and the module's table is zero-padded to the widest), installed
  already prepared (`Host.set_vectors`). What a kind
  means is not known here: each routing method registers it (`routers.token.GateKind`), and
  a row's `Gate` carries its `score(x [N, d], V [S, m·d]) -> [N, S]`.
- `Gate(kind, score, top_k, temperature, bias, experts, top_p)` routes one row: at every
  module, each token scores the experts that adapt the module and carry a vector of `kind`
  (restricted to `experts` slots when given), adds `bias[slot]` (GLIDER's alpha * global
  score), keeps the top-k and takes softmax(kept / temperature). With `top_p` (dynamic-k)
  a token keeps, of those top-k, the fewest whose softmax mass over every candidate
  reaches p; its weights are the softmax over what it keeps.
- `MixedRouting(rows, trace=None)` is a `Routing` for a batch whose rows are fixed
  mixtures (`[(slot, weight)]`, empty = base) or `Gate`s: heterogeneous batches share one
  forward pass. With a `RoutingTrace`, every gated decision (module, token, slots, weights)
  is recorded for introspection.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from composer.host.routing import SequenceRouting

Score = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # x [N, d], V [S, d] -> [N, S]


@dataclass
class Gate:
    kind: str
    score: Score
    top_k: int = 2
    temperature: float = 1.0
    bias: Mapping[int, float] = field(default_factory=dict)  # slot -> added logit
    experts: Sequence[int] | None = None  # allowed slots (None = every expert on the host)
    top_p: float | None = None  # dynamic-k: the fewest of the top-k reaching this softmax mass

    def __post_init__(self):
        if not callable(self.score):
            raise TypeError(f"gate kind {self.kind!r} needs a score function")
        if self.top_k < 1 or self.temperature <= 0:
            raise ValueError("a gate needs top_k >= 1 and temperature > 0")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"a gate's top_p must be in (0, 1], got {self.top_p}")


class RoutingTrace:
    """Gated decisions of one forward pass (or a whole generation), per module path."""

    def __init__(self):
        self.calls: list[
            tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]
        ] = []  # path, rows, slots, weights

    def record(self, path: str, rows: torch.Tensor, slots: torch.Tensor, weights: torch.Tensor) -> None:
        self.calls.append((path, rows, slots.clone(), weights.detach().float().clone()))


class MixedRouting(SequenceRouting):
    def __init__(
        self,
        rows: Sequence[Sequence[tuple[int, float]] | Gate],
        trace: RoutingTrace | None = None,
        device=None,
    ):
        self.rows, self.trace = list(rows), trace
        self._cache: dict[tuple, object] = {}  # per-kind constants of the gated rows (see _constants)
        self.gated = [b for b, r in enumerate(self.rows) if isinstance(r, Gate)]
        super().__init__(
            [[] if isinstance(r, Gate) else r for r in self.rows],
            width=max((self.rows[b].top_k for b in self.gated), default=1),
            device=device,
        )
        self.empty = self.empty and not self.gated

    def per_row(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        return None if self.gated or self.trace is not None else super().per_row()

    def assign(self, layer, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        assigned = super().assign(layer, x)
        if assigned is None or not self.gated:
            return assigned
        slots, weights = assigned
        T = self.tokens_per_row(x.shape[0])
        by_kind: dict[str, list[int]] = {}
        for b in self.gated:
            by_kind.setdefault(self.rows[b].kind, []).append(b)
        for kind, rows in by_kind.items():
            self._gate(layer, x, T, kind, rows, slots, weights)
        return slots, weights

    def _gate(self, layer, x, T, kind, rows, slots, weights) -> None:
        V, has = layer.gate_vectors(kind)  # [S, m·d], [S] bool
        if V is None:
            return  # no expert of this kind adapts this module: base output for these rows
        S, dev = V.shape[0], x.device
        gates = [self.rows[b] for b in rows]
        keep, bias, ks, temp, top_p, row_idx = self._constants(kind, rows, S, dev)
        allowed = has.unsqueeze(0) & keep
        tok = self._tokens(kind, row_idx, T)  # flat token ids of the gated rows
        xs = x[tok]
        # scores and their softmax in float32: low-precision ties would flip top-k choices
        logits = gates[0].score(xs, V.to(xs.dtype)).float().view(len(rows), T, S) + bias.unsqueeze(1)
        logits = logits.masked_fill(~allowed.unsqueeze(1), float("-inf")).view(-1, S)
        k = min(max(g.top_k for g in gates), S)
        top, idx = logits.topk(k, dim=-1)
        if top_p is not None:  # dynamic-k: drop a kept expert once those before it reach mass p
            mass = (
                torch.softmax(logits / temp.repeat_interleave(T, 0), dim=-1).nan_to_num(0.0).gather(-1, idx)
            )
            reached = (mass.cumsum(-1) - mass) >= top_p.repeat_interleave(T, 0)
            top = top.masked_fill(reached, float("-inf"))
        top = top.masked_fill(
            torch.arange(k, device=dev).unsqueeze(0) >= ks.repeat_interleave(T, 0), float("-inf")
        )
        # a token with no allowed expert: all zero
        w = torch.softmax(top / temp.repeat_interleave(T, 0), dim=-1).nan_to_num(0.0)
        idx = idx.masked_fill(~torch.isfinite(top), -1)
        slots[tok] = -1
        slots[tok, :k], weights[tok, :k] = idx, w.to(weights.dtype)
        weights[tok, k:] = 0
        if self.trace is not None:
            self.trace.record(
                getattr(layer, "path", "?"), row_idx, idx.view(len(rows), T, k), w.view(len(rows), T, k)
            )

    def _constants(self, kind: str, rows: list[int], S: int, dev) -> tuple:
        """Per gated kind, the same at every module and step: which slots each row may use
        ([R, S] bool), its bias ([R, S] float32), top-k, temperature and top-p ([R, 1]; None
        when no row asks for dynamic-k) and the rows' indices, built once on the host."""
        key = (kind, S)
        if key not in self._cache:
            gates = [self.rows[b] for b in rows]
            keep = torch.ones(len(rows), S, dtype=torch.bool)
            bias = torch.zeros(len(rows), S, dtype=torch.float32)
            for i, g in enumerate(gates):
                if g.experts is not None:
                    keep[i] = False
                    keep[i, [s for s in g.experts if s < S]] = True
                for s, v in g.bias.items():
                    if s < S:
                        bias[i, s] = v
            ks = torch.tensor([[g.top_k] for g in gates])
            temp = torch.tensor([[g.temperature] for g in gates])
            p = torch.tensor([[g.top_p if g.top_p is not None else float("inf")] for g in gates])
            top_p = p if any(g.top_p is not None for g in gates) else None
            consts = (keep, bias, ks, temp, top_p, torch.tensor(rows))
            self._cache[key] = tuple(t if t is None else t.to(dev) for t in consts)
        return self._cache[key]

    def _tokens(self, kind: str, row_idx: torch.Tensor, T: int) -> torch.Tensor:
        key = (kind, "tokens", T)
        if key not in self._cache:
            self._cache[key] = (row_idx.unsqueeze(1) * T + torch.arange(T, device=row_idx.device)).reshape(-1)
        return self._cache[key]
