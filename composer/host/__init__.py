"""The mixture-of-LoRA host: one base model, every expert of that base, any routing.

    host = Host.load("/models/base")
    host.add_adapter("math", "/adapters/math")
    host.generate(["2+2?", "hi"], mixtures=[{"math": 1.0}, {}])   # heterogeneous batch
    host.generate(["2+2?"], mixtures=[Gate("phatgoose", top_k=2)])  # per-token gates
"""
from composer.host.adapters import LoraWeights, read_lora
from composer.host.gates import SCORERS, Gate, MixedRouting, RoutingTrace
from composer.host.host import Generation, Host
from composer.host.layer import MoLoRALinear
from composer.host.routing import Routing, SequenceRouting, current_routing, use_routing

__all__ = ["SCORERS", "Gate", "Generation", "Host", "LoraWeights", "MixedRouting", "MoLoRALinear", "Routing",
           "RoutingTrace", "SequenceRouting", "current_routing", "read_lora", "use_routing"]
