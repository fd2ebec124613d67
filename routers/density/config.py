"""Config of the density router."""

from pydantic import Field

from routers.semantic import BANDWIDTH, AbstainConfig


class DensityConfig(AbstainConfig):
    bandwidth: float = Field(
        BANDWIDTH,
        gt=0,
        le=10,
        description="kernel width in cosine units: toward 0 the max cosine (retrieval), large the "
        "mean cosine; the default was chosen by bench/realtext.py",
    )
