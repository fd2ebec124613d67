"""Config of the retrieval router."""

from pydantic import Field

from routers.semantic import AbstainConfig


class RetrievalConfig(AbstainConfig):
    depth: int = Field(256, ge=1, le=100_000, description="nearest example rows searched per query")
    top_m: int = Field(
        1,
        ge=1,
        le=64,
        description="score an expert by the mean cosine of its m best examples among those searched "
        "(1: the max, the paper's rule)",
    )
    fitted_thresholds: bool = Field(
        False,
        description="abstain below the chosen expert's own threshold, fitted from labelled prompts "
        "(`composer fit retrieval --data FILE`), instead of one threshold for all",
    )
