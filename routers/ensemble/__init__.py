"""ensemble: run the top-k experts separately and keep the most confident answer."""
from routers.ensemble.router import EnsembleRouter

__all__ = ["EnsembleRouter"]
