"""retrieval (Jang et al. 2023): the expert whose examples hold the query's nearest neighbour."""
from routers.retrieval.router import RetrievalRouter

__all__ = ["RetrievalRouter"]
