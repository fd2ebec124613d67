"""Config of the density router."""

from pydantic import Field

from routers.semantic import AbstainConfig


class DensityConfig(AbstainConfig):
    bandwidth: float = Field(
        0.1,
        gt=0,
        le=10,
        description="kernel width in cosine units: toward 0 the max cosine (retrieval), large the "
        "mean cosine; 0.1 by bench/realtext.py",
    )
