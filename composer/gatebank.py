"""Every servable expert's token-gate vectors, and choosing a token plan's candidates with them.

Contract: `GateBank(ctx)` keeps, per gate kind and module, the prepared vectors of every
servable expert that has them (read from their artifacts once per expert version; small),
whether or not the expert's adapter is resident on the host. `preselect(host, prompt,
plan, n)` returns the `n` candidates of a token-level plan that its gates would use most
on this prompt: one forward of the prompt through the base model (no adapter) scores, at
every module, every candidate's vector (plus the plan's per-expert bias, GLIDER's global
term) against each token, keeps each token's top-k and adds up their softmax weights;
candidates are ranked by that mass (ties by name). It depends on the prompt and the plan
alone, never on what else is resident or batched, so a row's output stays batch-invariant
when a host holds fewer adapters than a token plan has candidates.
"""

from __future__ import annotations

import torch

from routers import RoutingPlan
from routers.artifacts import load as load_artifact
from routers.token import gate_kinds, vectors_from_bytes


def _mass(host, ids: torch.Tensor, bank: dict, kind, plan: RoutingPlan) -> dict[str, float]:
    """Per expert, the softmax weight the plan's gates give it over the tokens of `ids`, at
    every module of `bank`, on a base-model forward (hooks read each module's input)."""
    g, mass = plan.gate, {}

    def score(module_path: str):
        names, V = bank[module_path]
        keep = [i for i, n in enumerate(names) if n in plan.experts]

        def hook(_module, args):
            x = args[0].reshape(-1, args[0].shape[-1])
            bias = torch.tensor([g.bias.get(names[i], 0.0) for i in keep], device=x.device)
            scores = kind.score(x, V[keep].to(x.device, x.dtype)).float() + bias
            top, idx = scores.topk(min(g.top_k, len(keep)), dim=-1)
            w = torch.softmax(top / g.temperature, dim=-1)
            totals = torch.zeros(len(keep), device=x.device).index_add_(0, idx.reshape(-1), w.reshape(-1))
            for i, t in zip(keep, totals.tolist()):
                mass[names[i]] = mass.get(names[i], 0.0) + t

        return hook if keep else None

    with host.lock:  # no other request's forward may run while the hooks are on
        hooks = [host.model.get_submodule(m).register_forward_pre_hook(h) for m in bank if (h := score(m))]
        try:
            host.logits(ids)  # the base model: no routing
        finally:
            for h in hooks:
                h.remove()
    return mass


def _stack(vs: list[torch.Tensor]) -> torch.Tensor:
    """[E, width]: vectors of kinds with several rows per expert (SpectR) zero-padded to the widest."""
    width = max(v.numel() for v in vs)
    return torch.stack([torch.nn.functional.pad(v, (0, width - v.numel())) for v in vs])


class GateBank:
    def __init__(self, ctx):
        self.ctx = ctx
        self._vectors: dict[tuple[str, int, str], dict | None] = {}  # (name, version, kind) -> module -> v

    def modules(self, kind: str, records) -> dict[str, tuple[list[str], torch.Tensor]]:
        """Module path -> (expert names, prepared vectors [E, d]) over `records` having vectors."""
        spec = gate_kinds()[kind]
        rows: dict[str, tuple[list[str], list[torch.Tensor]]] = {}
        for rec in records:
            key = (rec.name, rec.version, kind)
            if key not in self._vectors:
                data = load_artifact(self.ctx, rec, spec.artifact)
                self._vectors[key] = (
                    None
                    if data is None
                    else {m: spec.prepare(v) for m, v in vectors_from_bytes(data).items()}
                )
            for module, v in (self._vectors[key] or {}).items():
                rows.setdefault(module, ([], []))
                rows[module][0].append(rec.name)
                rows[module][1].append(v)
        return {m: (names, _stack(vs)) for m, (names, vs) in rows.items()}

    def preselect(self, host, prompt, plan: RoutingPlan, n: int, records, chat: bool = True) -> list[str]:
        bank = self.modules(plan.gate.kind, [r for r in records if r.name in set(plan.experts)])
        mass = _mass(host, host.encode([prompt], chat)["input_ids"], bank, gate_kinds()[plan.gate.kind], plan)
        return sorted(plan.experts, key=lambda e: (-mass.get(e, 0.0), e))[:n]
