"""Config of the retrieval router."""

from pydantic import Field

from routers.semantic import AbstainConfig


class RetrievalConfig(AbstainConfig):
    depth: int = Field(256, ge=1, le=100_000, description="nearest example rows searched per query")
