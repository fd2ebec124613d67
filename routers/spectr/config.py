"""Config of the SpectR router (top-k as Arrow's PEFT default, 3; temperature 1)."""

from pydantic import Field

from routers.token import TokenConfig


class SpectrConfig(TokenConfig):
    top_k: int = Field(3, ge=1, le=64, description="experts kept per token per module (as Arrow: 3)")
