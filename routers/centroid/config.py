"""Config of the centroid router."""

from routers.semantic import AbstainConfig


class CentroidConfig(AbstainConfig):
    pass
