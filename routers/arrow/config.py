"""Config of the Arrow router (defaults as PEFT's ArrowConfig: top_k=3, temperature 1)."""

from pydantic import Field

from routers.token import TokenConfig


class ArrowConfig(TokenConfig):
    top_k: int = Field(3, ge=1, le=64, description="experts kept per token per module (PEFT default 3)")
