"""Installing experts into a host's model: the adapter half of `composer.host.Host`.

Contract (`AdapterSlots`, mixed into `Host`, which provides `model`, `slots`, `layers` and
`lock`): `add_adapter(name, path | LoraWeights)` installs a PEFT LoRA adapter (see
`registry.lora`) into mixture-of-LoRA layers, wrapping the modules it changes on first use,
after checking every module and shape, so a bad adapter changes nothing; `remove_adapter`
frees its slot; `set_vectors(name, kind, {module: vector})` installs its token-gate vectors
(already prepared for their kind), checked against the modules it adapts; `memory()` sums
the layers' adapter pools (rows held, rows of real ranks, bytes).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from composer.host.layer import MoLoRALinear
from registry.lora import LoraWeights, ModuleDelta, features, lora_types, read_lora


class AdapterSlots:
    def _target(self, module: str, delta: ModuleDelta | None, bias: torch.Tensor | None) -> nn.Module:
        """The module an adapter changes, checked: it exists, takes a LoRA (Linear, Conv1D) where
        the adapter has one, and has a bias of the trained bias's shape where it has one."""
        try:
            m = self.model.get_submodule(module)
        except AttributeError:
            raise ValueError(f"the base model has no module {module!r}") from None
        base = m.base_layer if isinstance(m, MoLoRALinear) else m
        if delta is not None:
            if not isinstance(base, lora_types()):
                raise ValueError(f"module {module!r} is {type(base).__name__}, not Linear or Conv1D")
            fi, fo = features(base)
            A, B = delta.A, delta.B
            if A.shape[1] != fi or B.shape[0] != fo or A.shape[0] != B.shape[1]:
                raise ValueError(
                    f"adapter shapes A{tuple(A.shape)} B{tuple(B.shape)} do not fit {module!r} ({fi} -> {fo})"
                )
        if bias is not None and tuple(getattr(getattr(base, "bias", None), "shape", ())) != tuple(bias.shape):
            raise ValueError(f"a trained bias of shape {tuple(bias.shape)} does not fit module {module!r}")
        return m

    def _wrap(self, module: str) -> MoLoRALinear:
        m = self.model.get_submodule(module)
        if not isinstance(m, MoLoRALinear):
            parent, _, child = module.rpartition(".")
            m = MoLoRALinear(m)
            m.path = module
            setattr(self.model.get_submodule(parent) if parent else self.model, child, m)
            self.layers[module] = m
        return m

    def add_adapter(self, name: str, adapter: str | Path | LoraWeights) -> int:
        lw = adapter if isinstance(adapter, LoraWeights) else read_lora(adapter)
        if not lw.modules:
            raise ValueError(f"adapter {name!r} has no LoRA weights")
        changed = sorted(set(lw.modules) | set(lw.biases))
        with self.lock:
            if name in self.slots:
                raise ValueError(f"expert {name!r} is already loaded; remove it first")
            for module in changed:  # validate everything before changing anything
                self._target(module, lw.modules.get(module), lw.biases.get(module))
            used = set(self.slots.values())
            slot = min(set(range(len(used) + 1)) - used)
            try:
                for module in changed:
                    d = lw.modules.get(module)
                    parts = (
                        {}
                        if d is None
                        else {
                            "A": d.A,
                            "B": d.B,
                            "scale": d.scale,
                            "lora_bias": d.lora_bias,
                            "magnitude": d.magnitude,
                        }
                    )
                    self._wrap(module).set_slot(slot, bias=lw.biases.get(module), **parts)
            except Exception:
                for layer in self.layers.values():  # nothing half-installed
                    layer.clear_slot(slot)
                raise
            self.slots[name] = slot
            return slot

    def memory(self) -> dict:
        """Adapter pools over every wrapped module: rows held vs rows of real ranks, bytes."""
        parts = [layer.memory() for layer in self.layers.values()]
        return {k: sum(p[k] for p in parts) for k in ("rows_held", "rows_real", "bytes")}

    def remove_adapter(self, name: str) -> None:
        with self.lock:
            if name not in self.slots:
                raise KeyError(f"expert {name!r} is not loaded")
            slot = self.slots.pop(name)
            for layer in self.layers.values():
                layer.clear_slot(slot)

    def set_vectors(self, name: str, kind: str, vectors: Mapping[str, torch.Tensor]) -> None:
        with self.lock:
            slot = self._slot(name)
            for module, v in vectors.items():  # validate everything before changing anything
                layer = self.layers.get(module)
                if layer is None or slot >= len(layer.rank) or layer.rank[slot] == 0:
                    raise ValueError(f"{kind} vector for {module!r}, which expert {name!r} does not adapt")
                if v.dim() != 1 or v.numel() == 0 or v.numel() % layer.in_features:
                    raise ValueError(
                        f"{kind} vector for {module!r} has shape {tuple(v.shape)}, "
                        f"expected ({layer.in_features},) or rows of it flattened"
                    )
            for module, v in vectors.items():
                self.layers[module].set_vector(kind, slot, v)
