"""uniform (merged experts / AdapterSoup): equal weights over all experts or a subset."""
from routers.uniform.router import UniformRouter

__all__ = ["UniformRouter"]
