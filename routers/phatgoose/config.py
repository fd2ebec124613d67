"""Configs of PHATGOOSE: routing (per request) and gate fitting (per registration)."""

from pydantic import Field

from routers.base import RouterConfig
from routers.token import TokenConfig


class PhatgooseConfig(TokenConfig):
    top_k: int = Field(2, ge=1, le=64, description="experts kept per token per module (paper: 2)")


class GateFitConfig(RouterConfig):
    steps: int = Field(100, ge=1, le=100_000, description="optimizer steps (paper: ~100)")
    lr: float = Field(5e-3, gt=0, description="AdamW learning rate (paper 5e-3; 1e-3 in another port)")
    batch_size: int = Field(32, ge=1, le=4096)
    weight_decay: float = Field(0.0, ge=0)
    max_examples: int = Field(1000, ge=1, description="examples of the expert used for fitting")
    seed: int = 0
    init_centroid: float = Field(
        0.0,
        ge=0,
        description="0: gates start at zero (the paper); c > 0: at c times the unit mean hidden state "
        "of the expert's examples at each module (the hidden router's vector)",
    )
