"""uniform (merged experts / AdapterSoup): equal weights over all experts or a subset."""

from routers.base import register_method
from routers.uniform.config import UniformConfig
from routers.uniform.router import UniformRouter

register_method("uniform", UniformRouter, UniformConfig)

__all__ = ["UniformRouter"]
