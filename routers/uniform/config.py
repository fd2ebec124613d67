"""Config of the uniform-merge router."""

from pydantic import Field

from routers.base import RouterConfig


class UniformConfig(RouterConfig):
    experts: list[str] | None = Field(
        None, min_length=1, description="subset to merge (default: every expert)"
    )
