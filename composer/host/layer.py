"""The mixture-of-LoRA linear layer (DESIGN §1).

Contract: `MoLoRALinear(base)` wraps an `nn.Linear` and holds the adapters of every
expert installed in it as stacked, zero-padded tensors

    A: [slots, r_max, d_in]   B: [slots, d_out, r_max]   scale, rank: per slot

    y = base(x) + sum_j w_j * scale_j * B_j (A_j x)        over the experts a token uses

The assignment (which slots, which weights, per token) comes from the active routing
(`routing.use_routing`); with none, or an expert that does not target this module (rank
0), the layer is exactly the base layer. Tokens are grouped by expert (MoE-style
dispatch): groups of similar size (padded to a power of two) go through one batched
matmul each, so a call costs a handful of kernels however many experts it uses, the work
grows with the experts used, not the experts installed, and one-hot weights reproduce
PEFT's own single-adapter output. `set_slot`/`clear_slot` install or drop one expert at run time.
Token-level gates read per-expert vectors of a kind ("phatgoose", "arrow") stored here by
`set_vector` (already prepared for their kind's score) through `gate_vectors(kind)`.
"""

from __future__ import annotations

import torch
from torch import nn

from composer.host.routing import current_routing


def _bucket(counts: torch.Tensor) -> torch.Tensor:
    """The next power of two of each group size (groups of one bucket share one bmm)."""
    return torch.pow(2, torch.ceil(torch.log2(counts.double()))).long()


class MoLoRALinear(nn.Module):
    def __init__(self, base: nn.Linear):
        super().__init__()
        self.base_layer = base
        self.in_features, self.out_features = base.in_features, base.out_features
        w = base.weight
        self.register_buffer("lora_A", w.new_zeros(0, 0, self.in_features), persistent=False)
        self.register_buffer("lora_B", w.new_zeros(0, self.out_features, 0), persistent=False)
        self.scale: list[float] = []
        self.rank: list[int] = []
        self.path = ""  # module path in the model, set by the host (traces name modules by it)
        self.vectors: dict[str, torch.Tensor] = {}  # kind -> [slots, d_in]
        self.has_vector: dict[str, torch.Tensor] = {}  # kind -> [slots] bool

    @property
    def weight(self) -> torch.Tensor:  # code that inspects `module.weight` keeps working
        return self.base_layer.weight

    def _grow(self, slots: int, r: int) -> None:
        n, r_max = self.lora_A.shape[:2]
        if slots <= n and r <= r_max:
            return
        slots, r = max(slots, n), max(r, r_max)
        A = self.lora_A.new_zeros(slots, r, self.in_features)
        B = self.lora_B.new_zeros(slots, self.out_features, r)
        A[:n, :r_max], B[:n, :, :r_max] = self.lora_A, self.lora_B
        self.lora_A, self.lora_B = A, B
        self.scale += [0.0] * (slots - len(self.scale))
        self.rank += [0] * (slots - len(self.rank))
        for kind, V in self.vectors.items():
            self.vectors[kind] = torch.cat([V, V.new_zeros(slots - V.shape[0], self.in_features)])
            self.has_vector[kind] = torch.cat(
                [self.has_vector[kind], torch.zeros(slots - V.shape[0], dtype=torch.bool)]
            )

    @torch.no_grad()
    def set_slot(self, slot: int, A: torch.Tensor, B: torch.Tensor, scale: float) -> None:
        r = A.shape[0]
        if A.shape != (r, self.in_features) or B.shape != (self.out_features, r):
            raise ValueError(
                f"LoRA shapes A{tuple(A.shape)} B{tuple(B.shape)} do not fit "
                f"Linear({self.in_features} -> {self.out_features})"
            )
        self._grow(slot + 1, r)
        self.lora_A[slot].zero_()
        self.lora_B[slot].zero_()
        self.lora_A[slot, :r] = A.to(self.lora_A.dtype)
        self.lora_B[slot, :, :r] = B.to(self.lora_B.dtype)
        self.scale[slot], self.rank[slot] = float(scale), r

    @torch.no_grad()
    def clear_slot(self, slot: int) -> None:
        if slot < len(self.rank):
            self.lora_A[slot].zero_()
            self.lora_B[slot].zero_()
            self.scale[slot], self.rank[slot] = 0.0, 0
            for kind in self.vectors:
                self.vectors[kind][slot].zero_()
                self.has_vector[kind][slot] = False

    @torch.no_grad()
    def set_vector(self, kind: str, slot: int, v: torch.Tensor) -> None:
        if slot >= len(self.rank) or self.rank[slot] == 0:
            raise ValueError(f"expert slot {slot} does not adapt this module; a {kind} vector needs its LoRA")
        if v.shape != (self.in_features,):
            raise ValueError(
                f"{kind} vector of shape {tuple(v.shape)} does not fit in_features={self.in_features}"
            )
        if kind not in self.vectors:
            n = len(self.rank)
            self.vectors[kind] = self.lora_A.new_zeros(n, self.in_features)
            self.has_vector[kind] = torch.zeros(n, dtype=torch.bool)
        self.vectors[kind][slot] = v.to(self.vectors[kind].dtype)
        self.has_vector[kind][slot] = True

    def gate_vectors(self, kind: str) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        return self.vectors.get(kind), self.has_vector.get(kind)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base_layer(x)
        routing = current_routing()
        if routing is None or not any(self.rank):
            return y
        per_row = getattr(routing, "per_row", lambda: None)()
        if per_row is not None and x.dim() == 3:
            return self._per_row(x, y, *per_row)
        assigned = routing.assign(self, x)
        if assigned is None:
            return y
        slots, weights = assigned
        S = len(self.rank)
        x2, y2 = x.reshape(-1, self.in_features), y.view(-1, self.out_features)
        flat = slots.reshape(-1)
        pairs = ((flat >= 0) & (flat < S)).nonzero(as_tuple=True)[
            0
        ]  # (token, position) pairs on an expert here
        if pairs.numel() == 0:
            return y
        pairs = pairs[torch.argsort(flat[pairs], stable=True)]  # grouped by expert
        experts, counts = torch.unique_consecutive(flat[pairs], return_counts=True)
        scale = torch.tensor(self.scale, dtype=x2.dtype)
        tokens = torch.cat([pairs // slots.shape[1], pairs.new_zeros(1)])  # + a dummy pair for padding
        w = torch.cat([weights.reshape(-1)[pairs].to(x2.dtype) * scale[flat[pairs]], x2.new_zeros(1)])
        starts = torch.cumsum(counts, 0) - counts
        ranks = torch.tensor(self.rank)[experts]
        size = _bucket(counts)  # each group padded to a power of two: at most 2x the work, few kernels
        for b in torch.unique(size).tolist():
            g = (size == b).nonzero(as_tuple=True)[0]
            r = int(ranks[g].max())  # the bucket's largest real rank, not the host's
            if r == 0:
                continue
            ar = torch.arange(b)
            idx = starts[g, None] + ar
            idx = torch.where(ar < counts[g, None], idx, tokens.numel() - 1)  # padding -> the dummy pair
            tok, wt = tokens[idx], w[idx]  # [groups, b]
            e = experts[g]
            h = torch.bmm(x2[tok], self.lora_A[e, :r].transpose(1, 2))  # [groups, b, r]
            delta = torch.bmm(
                h * wt.unsqueeze(-1), self.lora_B[e, :, :r].transpose(1, 2)
            )  # [groups, b, d_out]
            y2.index_add_(0, tok.reshape(-1), delta.reshape(-1, self.out_features).to(y2.dtype))
        return y  # y is this call's fresh base output: updated in place

    def _per_row(
        self, x: torch.Tensor, y: torch.Tensor, slots: torch.Tensor, weights: torch.Tensor
    ) -> torch.Tensor:
        """Rows routed alike at every token (select, merge): per mixture position, gather each
        row's A and B and run two batched matmuls over the rows — no per-token gathers."""
        if x.shape[0] != slots.shape[0]:
            raise ValueError(f"routing has {slots.shape[0]} rows but the batch has {x.shape[0]}")
        S = len(self.rank)
        ranks = torch.tensor(self.rank + [0])  # index S: "no expert here"
        scale = torch.tensor(self.scale + [0.0], dtype=x.dtype)
        for j in range(slots.shape[1]):
            s = torch.where((slots[:, j] >= 0) & (slots[:, j] < S), slots[:, j], S)
            r = int(ranks[s].max())
            if r == 0:
                continue
            use = s.clamp(max=S - 1)
            w = (weights[:, j].to(x.dtype) * scale[s] * (ranks[s] > 0)).view(-1, 1, 1)
            h = torch.bmm(x, self.lora_A[use, :r].transpose(1, 2))  # [rows, T, r]
            y = y + torch.bmm(h * w, self.lora_B[use, :, :r].transpose(1, 2)).to(y.dtype)
        return y

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, experts={sum(r > 0 for r in self.rank)}"
