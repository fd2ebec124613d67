"""oracle (evaluation only): the expert known to be best for the example's task."""

from routers.base import register_method
from routers.oracle.config import OracleConfig
from routers.oracle.router import OracleRouter

register_method("oracle", OracleRouter, OracleConfig)

__all__ = ["OracleRouter"]
