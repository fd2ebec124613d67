"""Configs of the hidden-state router: routing (per request) and centroid fitting (per
registration)."""

from pydantic import Field

from routers.base import RouterConfig
from routers.token import TokenConfig


class HiddenConfig(TokenConfig):
    top_k: int = Field(2, ge=1, le=64, description="experts kept per token per module (as PHATGOOSE: 2)")


class CentroidFitConfig(RouterConfig):
    max_examples: int = Field(64, ge=1, le=100_000, description="examples of the expert averaged over")
    with_expert: bool = Field(
        False, description="record the hidden states with the expert applied (mttl's default) or the base's"
    )
