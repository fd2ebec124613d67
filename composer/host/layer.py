"""The mixture-of-LoRA layer (DESIGN §1): one base module, the deltas of every installed expert.

Contract: `MoLoRALinear(base)` wraps an `nn.Linear` or a transformers `Conv1D` (weight
[in, out]) — or, for experts that only change its bias (PEFT `bias="all"`), any module with
a bias (a LayerNorm...). Each installed expert (a *slot* j) has the delta

    delta_j(x) = g_j ⊙ (s_j B_j A_j x) + (g_j - 1) ⊙ W x + c_j

with its LoRA (A [r, in], B [out, r], scale s), its gain g (1 for plain LoRA; for DoRA
m / ||W + s B A|| per output row, computed once at install as PEFT's inference does) and its
constant c (g ⊙ s ⊙ lora_B's bias, plus the change of the module's own bias it was trained
with: `bias="lora_only"/"all"`). A token whose routing gives weights w_j over slots gets

    y = base(x) + Σ_j w_j delta_j(x)

so one-hot weights reproduce PEFT's single-adapter output exactly (plain, rsLoRA, rank and
alpha patterns, DoRA, trained biases), and merges and per-token mixtures are the weighted
sum of the experts' own deltas (a DoRA expert contributes its whole DoRA delta).

- Memory follows the real ranks: the rows of every A (and of every B, transposed) live in
  one pool per module, a slot holding exactly its r rows at an offset (row 0 stays zero, the
  target of padding); a new expert takes a free span or the pool's end, growing it by 1.25x
  when full (amortised: the others are copied only at a growth); removal frees its span,
  and a pool left holding more than 1.5x its live rows is repacked to their real size.
  `memory()` reports the rows held and the rows of real ranks.
- The routing (`routing.use_routing`) is asked for each token's slots and weights; the
  module's input is flattened to [N, d] (tokens in order: [batch, seq, d] or [batch*seq, d]
  alike). Rows routed alike at every token (select, merge) run as two batched matmuls over
  rows; per-token routing groups (token, expert) pairs by expert into batched matmuls of
  similar size, so the work grows with the experts used, not the experts installed.
- `set_slot(slot, A, B, scale, ...)` / `clear_slot(slot)` install or drop one expert;
  `set_vector(kind, slot, v)` stores a token-gate vector (already prepared for its kind),
  read by the gates through `gate_vectors(kind)`. Any failure inside the routed part of a
  forward is a `LayerError` naming the module path.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from composer.host.routing import current_routing
from registry.lora import features, lora_types

GROWTH = 1.25  # a full pool grows by this factor
COMPACT = 1.5  # a pool holding this many times its live rows (after removals) is repacked


class LayerError(RuntimeError):
    """A forward failed inside a mixture-of-LoRA layer; names the module."""

    def __init__(self, path: str, error: BaseException):
        super().__init__(f"module {path or '?'}: {type(error).__name__}: {error}")
        self.path = path


def _bucket(counts: torch.Tensor) -> torch.Tensor:
    """The next power of two of each group size (groups of one bucket share one bmm)."""
    return torch.pow(2, torch.ceil(torch.log2(counts.double()))).long()


class MoLoRALinear(nn.Module):
    def __init__(self, base: nn.Module):
        super().__init__()
        self.base_layer = base
        self.lora_capable = isinstance(base, lora_types())
        w = base.weight
        if self.lora_capable:
            self.in_features, self.out_features = features(base)
        else:  # a bias-only module (LayerNorm...): its output is its bias's size
            self.in_features, self.out_features = None, base.bias.shape[0]
        d_in = self.in_features or 0
        self.register_buffer("A_rows", w.new_zeros(1, d_in), persistent=False)  # row 0: zeros
        self.register_buffer("B_rows", w.new_zeros(1, self.out_features), persistent=False)  # B transposed
        self.used = 1
        self.free: list[tuple[int, int]] = []  # (start, rows) spans given back by removals
        self.offset: list[int] = []
        self.rank: list[int] = []
        self.scale: list[float] = []
        self.installed: list[bool] = []
        self.register_buffer("gain", w.new_ones(0, self.out_features), persistent=False)
        self.register_buffer("shift", w.new_zeros(0, self.out_features), persistent=False)
        self.dora = 0  # slots with a gain != 1
        self.shifted = 0  # slots with a constant c
        self.path = ""  # module path in the model, set by the host (errors and traces name modules by it)
        self.vectors: dict[str, torch.Tensor] = {}  # kind -> [slots, m·d_in] (m = 1 but for SpectR)
        self.has_vector: dict[str, torch.Tensor] = {}  # kind -> [slots] bool
        self.vector_slots: dict[str, set[int]] = {}  # the same on the host: no device read per forward
        self._cached: tuple | None = None  # index tables, rebuilt after any slot change

    @property
    def weight(self) -> torch.Tensor:  # code that inspects `module.weight` keeps working
        return self.base_layer.weight

    def memory(self) -> dict:
        """Rows held by the pools vs rows of the installed ranks (+ the zero row), and bytes."""
        per_row = (self.A_rows.shape[1] + self.B_rows.shape[1]) * self.A_rows.element_size()
        return {
            "rows_held": self.A_rows.shape[0],
            "rows_real": 1 + sum(self.rank),
            "bytes": self.A_rows.shape[0] * per_row,
        }

    # -- slots ----------------------------------------------------------------------------
    def _slots(self, n: int) -> None:
        """Room for `n` slots in the per-slot tensors (grown by GROWTH, never shrunk)."""
        have = len(self.rank)
        if n <= have:
            return
        extra = n - have
        self.offset += [0] * extra
        self.rank += [0] * extra
        self.scale += [0.0] * extra
        self.installed += [False] * extra
        self.gain = torch.cat([self.gain, self.gain.new_ones(extra, self.out_features)])
        self.shift = torch.cat([self.shift, self.shift.new_zeros(extra, self.out_features)])
        for kind, V in self.vectors.items():
            self.vectors[kind] = torch.cat([V, V.new_zeros(extra, V.shape[1])])
            self.has_vector[kind] = torch.cat([self.has_vector[kind], self.has_vector[kind].new_zeros(extra)])

    def _alloc(self, r: int) -> int:
        for i, (start, n) in enumerate(self.free):
            if n >= r:
                self.free[i : i + 1] = [(start + r, n - r)] if n > r else []
                return start
        if self.used + r > self.A_rows.shape[0]:
            cap = max(self.used + r, math.ceil(self.A_rows.shape[0] * GROWTH))
            A = self.A_rows.new_zeros(cap, self.A_rows.shape[1])
            B = self.B_rows.new_zeros(cap, self.out_features)
            A[: self.used], B[: self.used] = self.A_rows[: self.used], self.B_rows[: self.used]
            self.A_rows, self.B_rows = A, B
        start, self.used = self.used, self.used + r
        return start

    def _release(self, start: int, r: int) -> None:
        self.A_rows[start : start + r] = 0
        self.B_rows[start : start + r] = 0
        spans = sorted([*self.free, (start, r)])
        merged: list[tuple[int, int]] = []
        for s, n in spans:
            if merged and merged[-1][0] + merged[-1][1] == s:
                merged[-1] = (merged[-1][0], merged[-1][1] + n)
            else:
                merged.append((s, n))
        if merged and merged[-1][0] + merged[-1][1] == self.used:  # a span at the end: give it back
            self.used = merged.pop()[0]
        self.free = merged
        real = 1 + sum(self.rank) - r  # this slot's rank is zeroed by the caller after
        if self.A_rows.shape[0] > max(64, COMPACT * real):
            self._compact(skip=start)

    def _compact(self, skip: int) -> None:
        """Repack the live slots' rows into a pool of their real size (after many removals)."""
        live = [s for s in range(len(self.rank)) if self.rank[s] and self.offset[s] != skip]
        rows = 1 + sum(self.rank[s] for s in live)
        A, B = (
            self.A_rows.new_zeros(rows, self.A_rows.shape[1]),
            self.B_rows.new_zeros(rows, self.out_features),
        )
        at = 1
        for s in live:
            off, r = self.offset[s], self.rank[s]
            A[at : at + r], B[at : at + r] = self.A_rows[off : off + r], self.B_rows[off : off + r]
            self.offset[s], at = at, at + r
        self.A_rows, self.B_rows, self.used, self.free = A, B, rows, []
        self._cached = None

    def _base_weight_out_in(self) -> torch.Tensor:
        w = self.base_layer.weight
        return w if isinstance(self.base_layer, nn.Linear) else w.T  # Conv1D keeps [in, out]

    @torch.no_grad()
    def set_slot(
        self, slot: int, A=None, B=None, scale: float = 1.0, lora_bias=None, magnitude=None, bias=None
    ) -> None:
        """Install an expert: its LoRA (A [r, in], B [out, r], scale; optional lora_B bias and DoRA
        magnitude [out]) and/or the bias it replaces this module's with ([out])."""
        if A is not None:
            r = A.shape[0]
            if not self.lora_capable:
                raise ValueError(f"a LoRA needs a Linear or Conv1D, not {type(self.base_layer).__name__}")
            if A.shape != (r, self.in_features) or B.shape != (self.out_features, r):
                raise ValueError(
                    f"LoRA shapes A{tuple(A.shape)} B{tuple(B.shape)} do not fit "
                    f"{self.in_features} -> {self.out_features}"
                )
        self.clear_slot(slot)
        self._slots(slot + 1)
        self._cached = None
        dtype = self.B_rows.dtype
        c = self.shift.new_zeros(self.out_features)
        if A is not None:
            off = self._alloc(r)
            self.A_rows[off : off + r] = A.to(dtype)
            self.B_rows[off : off + r] = B.T.to(dtype)
            self.offset[slot], self.rank[slot], self.scale[slot] = off, r, float(scale)
            g = torch.ones_like(c)
            if magnitude is not None:
                merged = self._base_weight_out_in().float() + float(scale) * (B.float() @ A.float())
                g = (magnitude.float() / torch.linalg.norm(merged, dim=1)).to(dtype)
                self.gain[slot], self.dora = g, self.dora + 1
            if lora_bias is not None:
                c += g * float(scale) * lora_bias.to(dtype)
        if bias is not None:
            base_bias = getattr(self.base_layer, "bias", None)
            if base_bias is None or tuple(bias.shape) != tuple(base_bias.shape):
                raise ValueError(
                    f"a trained bias of shape {tuple(bias.shape)} does not fit this module's bias"
                )
            c += bias.to(dtype) - base_bias.to(dtype)
        if bool(c.any()):
            self.shift[slot], self.shifted = c, self.shifted + 1
        self.installed[slot] = True

    @torch.no_grad()
    def clear_slot(self, slot: int) -> None:
        if slot >= len(self.rank) or not self.installed[slot]:
            return
        self._cached = None
        if self.rank[slot]:
            self._release(self.offset[slot], self.rank[slot])
        if bool((self.gain[slot] != 1).any()):
            self.gain[slot], self.dora = 1, self.dora - 1
        if bool(self.shift[slot].any()):
            self.shift[slot], self.shifted = 0, self.shifted - 1
        self.offset[slot] = self.rank[slot] = 0
        self.scale[slot], self.installed[slot] = 0.0, False
        for kind in self.vectors:
            self.vectors[kind][slot].zero_()
            self.has_vector[kind][slot] = False
            self.vector_slots[kind].discard(slot)

    @torch.no_grad()
    def set_vector(self, kind: str, slot: int, v: torch.Tensor) -> None:
        if slot >= len(self.rank) or self.rank[slot] == 0:
            raise ValueError(f"expert slot {slot} does not adapt this module; a {kind} vector needs its LoRA")
        if v.dim() != 1 or v.numel() == 0 or v.numel() % self.in_features:
            raise ValueError(
                f"{kind} vector of shape {tuple(v.shape)} does not fit in_features={self.in_features}"
            )
        if kind not in self.vectors:
            self.vectors[kind] = self.A_rows.new_zeros(len(self.rank), v.numel())
            self.has_vector[kind] = torch.zeros(len(self.rank), dtype=torch.bool, device=self.A_rows.device)
        V = self.vectors[kind]
        if v.numel() > V.shape[1]:  # a kind with several rows per expert (SpectR): widen, zero-padded
            self.vectors[kind] = V = torch.cat([V, V.new_zeros(V.shape[0], v.numel() - V.shape[1])], 1)
        V[slot] = 0
        V[slot, : v.numel()] = v.to(V.dtype)
        self.has_vector[kind][slot] = True
        self.vector_slots.setdefault(kind, set()).add(slot)

    def gate_vectors(self, kind: str) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """([slots, m·d_in] vectors, [slots] bool has-a-vector) of `kind`; (None, None) when no
        expert has one here (known on the host, so asking costs the device nothing)."""
        if not self.vector_slots.get(kind):
            return None, None
        return self.vectors[kind], self.has_vector[kind]

    # -- forward --------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base_layer(x)
        routing = current_routing()
        if routing is None or not any(self.installed):
            return y
        try:
            return self._routed(routing, x, y)
        except Exception as e:
            raise LayerError(self.path, e) from e

    def _tables(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(offset, rank, scale) per slot as tensors, with one more entry (S) meaning "no expert"."""
        if self._cached is None:
            dev = self.B_rows.device
            self._cached = (
                torch.tensor(self.offset + [0], device=dev),
                torch.tensor(self.rank + [0], device=dev),
                torch.tensor(self.scale + [0.0], dtype=self.B_rows.dtype, device=dev),
            )
        return self._cached

    def _rows_of(self, slots: torch.Tensor, r: int) -> torch.Tensor:
        """Pool rows [.., r] of each slot in `slots` (-1 / beyond: none), padded with the zero row."""
        S = len(self.rank)
        s = torch.where((slots >= 0) & (slots < S), slots, S)
        offset, rank, _ = self._tables()
        offset, rank = offset[s], rank[s]
        ar = torch.arange(r, device=slots.device)
        return torch.where(ar < rank.unsqueeze(-1), offset.unsqueeze(-1) + ar, 0)

    def _routed(self, routing, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        y = y.contiguous()  # a fresh output of the base module: updated in place below
        y2 = y.view(-1, self.out_features)
        x2 = x.reshape(y2.shape[0], -1) if self.lora_capable else None
        wx = None  # W x, for DoRA's (g - 1) ⊙ W x, taken before any delta is added
        if self.dora:
            bias = getattr(self.base_layer, "bias", None)
            wx = y2 - bias if bias is not None else y2.clone()
        per_row = getattr(routing, "per_row", lambda: None)()  # a per-token routing may not have it
        if per_row is not None:
            return self._per_row(x2, y2, wx, *per_row, routing.host_slots).view_as(y)
        assigned = routing.assign(self, x2 if x2 is not None else y2)
        if assigned is not None and isinstance(assigned[0], int):
            self._one_slot(x2, y2, wx, *assigned)
        elif assigned is not None:
            self._per_token(x2, y2, wx, *assigned)
        return y

    def _one_slot(self, x2, y2, wx, slot: int, weights: torch.Tensor) -> None:
        """Every token through the one expert in `slot`, each with its own weight [N, 1] (how
        PHATGOOSE's gates are fitted): two matmuls, no dispatch; added into `y2` in place."""
        w = weights.reshape(-1, 1).to(y2.dtype)
        rows = slice(self.offset[slot], self.offset[slot] + self.rank[slot])
        h = x2 @ self.A_rows[rows].T if self.rank[slot] else None  # a bias-only module has no x2
        delta = (h * (w * self.scale[slot])) @ self.B_rows[rows] if h is not None else torch.zeros_like(y2)
        if self.dora:
            delta = delta * self.gain[slot] + w * (self.gain[slot] - 1) * wx
        if self.shifted:
            delta = delta + w * self.shift[slot]
        y2.add_(delta.to(y2.dtype))

    def _per_row(self, x2, y2, wx, slots: torch.Tensor, weights: torch.Tensor, host_slots) -> torch.Tensor:
        """Rows routed alike at every token (select, merge): per mixture position, gather each
        row's A and B rows from the pool and run two batched matmuls over the rows. Which
        positions are live and their largest rank come from `host_slots` (the same slots as
        lists on the host), so the device is never waited on."""
        rows, out = slots.shape[0], self.out_features
        T = y2.shape[0] // rows
        if T * rows != y2.shape[0]:
            raise ValueError(
                f"a module saw {y2.shape[0]} tokens, which do not split into the batch's {rows} rows"
            )
        S = len(self.rank)
        y3 = y2.view(rows, T, out)
        scale = self._tables()[2]
        for j in range(slots.shape[1]):
            used = [self.rank[c[j]] for c in host_slots if 0 <= c[j] < S]
            if not used:
                continue
            s = torch.where((slots[:, j] >= 0) & (slots[:, j] < S), slots[:, j], S)
            w = weights[:, j].to(y2.dtype) * (s < S)
            r = max(used)
            if r:
                idx = self._rows_of(slots[:, j], r)  # [rows, r]
                h = torch.bmm(x2.view(rows, T, -1), self.A_rows[idx].transpose(1, 2))  # [rows, T, r]
                delta = torch.bmm(h * (w * scale[s]).view(-1, 1, 1), self.B_rows[idx])  # [rows, T, out]
                if self.dora:
                    g = self.gain[s.clamp(max=S - 1)].unsqueeze(1)
                    delta = delta * g + w.view(-1, 1, 1) * (g - 1) * wx.view(rows, T, out)
                y3 = y3 + delta.to(y3.dtype)
            if self.shifted:
                y3 = y3 + (w.view(-1, 1) * self.shift[s.clamp(max=S - 1)]).unsqueeze(1).to(y3.dtype)
        return y3

    def _per_token(self, x2, y2, wx, slots: torch.Tensor, weights: torch.Tensor) -> None:
        """Per-token routing: (token, expert) pairs sorted by expert, groups of similar size (padded
        to a power of two) through one batched matmul each; results added into `y2` in place."""
        S = len(self.rank)
        flat = slots.reshape(-1)
        pairs = ((flat >= 0) & (flat < S)).nonzero(as_tuple=True)[0]
        if pairs.numel() == 0:
            return
        pairs = pairs[torch.argsort(flat[pairs], stable=True)]  # grouped by expert
        experts, counts = torch.unique_consecutive(flat[pairs], return_counts=True)
        tokens = torch.cat([pairs // slots.shape[1], pairs.new_zeros(1)])  # + a dummy pair for padding
        raw = torch.cat([weights.reshape(-1)[pairs].to(y2.dtype), y2.new_zeros(1)])
        _, rank, scale = self._tables()
        w = raw * torch.cat([scale[flat[pairs]], scale.new_zeros(1)])
        starts = torch.cumsum(counts, 0) - counts
        ranks = rank[experts]
        size = _bucket(counts)
        for b in torch.unique(size).tolist():
            g = (size == b).nonzero(as_tuple=True)[0]
            ar = torch.arange(b, device=y2.device)
            idx = torch.where(
                ar < counts[g, None], starts[g, None] + ar, tokens.numel() - 1
            )  # padding -> dummy
            tok, e = tokens[idx], experts[g]  # [groups, b]
            r = int(ranks[g].max())
            if r:
                rows = self._rows_of(e, r)  # [groups, r]
                h = torch.bmm(x2[tok], self.A_rows[rows].transpose(1, 2))  # [groups, b, r]
                delta = torch.bmm(h * w[idx].unsqueeze(-1), self.B_rows[rows])  # [groups, b, out]
            else:
                delta = y2.new_zeros(len(g), b, self.out_features)
            if self.dora:
                gain = self.gain[e].unsqueeze(1)  # [groups, 1, out]
                delta = delta * gain + raw[idx].unsqueeze(-1) * (gain - 1) * wx[tok]
            if self.shifted:
                delta = delta + raw[idx].unsqueeze(-1) * self.shift[e].unsqueeze(1)
            y2.index_add_(0, tok.reshape(-1), delta.reshape(-1, self.out_features).to(y2.dtype))

    def extra_repr(self) -> str:
        return (
            f"in={self.in_features}, out={self.out_features}, experts={sum(self.installed)}, "
            f"pool_rows={self.A_rows.shape[0]}"
        )
