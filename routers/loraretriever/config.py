"""Config of the LoraRetriever router."""

from typing import Literal

from pydantic import Field

from routers.semantic import AbstainConfig, Scorer


class LoraRetrieverConfig(AbstainConfig):
    top_k: int = Field(3, ge=1, le=64, description="experts retrieved per query")
    combine: Literal["merge", "ensemble"] = Field(
        "merge", description="mix LoRA deltas, or run each and pick"
    )
    scorer: Scorer = Field(
        "centroid",
        description="'centroid' (LoraRetriever's mean of sample embeddings), 'max' or 'density' (the density router's default bandwidth)",
    )
