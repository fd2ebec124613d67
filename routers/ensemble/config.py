"""Config of the output-ensemble router."""

from pydantic import Field

from routers.semantic import AbstainConfig, Scorer


class EnsembleConfig(AbstainConfig):
    top_k: int = Field(2, ge=1, le=16, description="experts run per query")
    scorer: Scorer = Field(
        "max",
        description="how candidates are ranked: 'max' (retrieval), 'centroid' or 'density' (the density router's default bandwidth)",
    )
