"""What a token-level plan did at one module: its input and the host's routing trace.

Contract: `routed_at(composer, plan, prompt, module)` runs `prompt` through the composer's
host under `plan` (one forward, no generation) and returns (x, call): the module's input
as [tokens, d_in] float32, and the trace call recorded there, (module, ..., slots [1, T, k],
weights [1, T, k]) as `composer.host.RoutingTrace` keeps it.
"""

from __future__ import annotations

import torch

from composer.executor import host_row
from composer.host import RoutingTrace


def routed_at(composer, plan, prompt: str, module: str) -> tuple[torch.Tensor, tuple]:
    host = composer.host
    seen = []
    hook = host.model.get_submodule(module).register_forward_pre_hook(
        lambda _m, a: seen.append(a[0].detach())
    )
    trace = RoutingTrace()
    try:
        enc = host.encode([prompt])
        host.logits(enc["input_ids"], enc["attention_mask"], mixtures=[host_row(plan)], trace=trace)
    finally:
        hook.remove()
    x = seen[0].reshape(-1, seen[0].shape[-1]).float()
    return x, next(c for c in trace.calls if c[0] == module)
