"""oracle (evaluation only): the expert known to be best for the example's task."""
from routers.oracle.router import OracleRouter

__all__ = ["OracleRouter"]
