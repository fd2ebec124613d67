"""centroid: the expert whose mean example embedding is closest to the query."""
from routers.centroid.router import CentroidRouter

__all__ = ["CentroidRouter"]
