"""Config of the Bench-CoE router."""

from typing import Literal

from pydantic import Field

from routers.coe.config import KNNConfig


class BenchCoEConfig(KNNConfig):
    level: Literal["query", "subject"] = Field(
        "query", description="per-query regressor or subject classifier"
    )
    threshold: float = Field(
        0.0, ge=0, le=1, description="fall back when the predicted score/confidence is lower"
    )
    fallback: str | None = Field(
        None, description="general expert used when falling back (default: the base model)"
    )
