"""Config of the CoE router."""

from pydantic import Field

from routers.base import RouterConfig


class KNNConfig(RouterConfig):
    k: int = Field(10, ge=1, le=1000, description="labelled neighbours that vote")
    temperature: float = Field(
        0.05, gt=0, description="softmax temperature of the neighbours' cosine weights"
    )


class CoEConfig(KNNConfig):
    threshold: float = Field(
        0.0, ge=0, le=1, description="fall back when the classifier's top probability is lower"
    )
    fallback: str | None = Field(
        None, description="general expert used when falling back (default: the base model)"
    )
