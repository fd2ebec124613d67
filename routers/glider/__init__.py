"""glider (Li et al. 2024): PHATGOOSE's local gates biased per request by a global task match."""
from routers.glider.fit import task_embedding
from routers.glider.router import GliderRouter
from routers.glider.writers import EndpointWriter, ModelWriter, writer_from_spec

__all__ = ["EndpointWriter", "GliderRouter", "ModelWriter", "task_embedding", "writer_from_spec"]
