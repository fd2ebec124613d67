"""phatgoose (Muqeeth et al. 2024): per-token, per-module gates fitted post-hoc per expert."""

from routers.base import register_method
from routers.phatgoose.config import PhatgooseConfig
from routers.phatgoose.fit import GATES, fit_gates
from routers.phatgoose.router import PHATGOOSE, PhatgooseRouter, layer_norm

register_method("phatgoose", PhatgooseRouter, PhatgooseConfig, artifacts=[GATES], gate=PHATGOOSE)

__all__ = ["GATES", "PHATGOOSE", "PhatgooseRouter", "fit_gates", "layer_norm"]
