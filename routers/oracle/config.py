"""Config of the oracle router."""

from pydantic import Field

from routers.base import RouterConfig


class OracleConfig(RouterConfig):
    mapping: dict[str, str] = Field(
        default_factory=dict, description="task -> expert; a task named like an expert maps to it"
    )
    fallback: str | None = Field(
        None, description="expert for tasks without an oracle (default: the base model)"
    )
