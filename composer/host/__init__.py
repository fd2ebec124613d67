"""The mixture-of-LoRA host: one base model, every expert of that base, any routing.

    host = Host.load("/models/base")
    host.add_adapter("math", "/adapters/math")
    host.generate(["2+2?", "hi"], mixtures=[{"math": 1.0}, {}])   # heterogeneous batch
    host.generate(["2+2?"], mixtures=[Gate("arrow", score, top_k=2)])  # per-token gates

It imports nothing of Composer's routers or core: what a gate kind scores comes in the `Gate`.
"""

from composer.host.gates import Gate, MixedRouting, RoutingTrace
from composer.host.host import Generation, Host, resolve
from composer.host.layer import MoLoRALinear
from composer.host.routing import Routing, SequenceRouting, current_routing, use_routing
from registry.lora import LoraWeights, read_lora

__all__ = [
    "Gate",
    "Generation",
    "Host",
    "LoraWeights",
    "MixedRouting",
    "MoLoRALinear",
    "Routing",
    "RoutingTrace",
    "SequenceRouting",
    "current_routing",
    "read_lora",
    "resolve",
    "use_routing",
]
