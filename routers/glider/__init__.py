"""glider (Li et al. 2024): PHATGOOSE's local gates biased per request by a global task match."""

from routers.base import register_method
from routers.glider.config import GliderConfig
from routers.glider.fit import TASK_EMBEDDING, task_embedding
from routers.glider.router import GliderRouter
from routers.glider.writers import EndpointWriter, ModelWriter, writer_from_spec
from routers.phatgoose import GATES

register_method("glider", GliderRouter, GliderConfig, artifacts=[GATES, TASK_EMBEDDING])

__all__ = [
    "TASK_EMBEDDING",
    "EndpointWriter",
    "GliderRouter",
    "ModelWriter",
    "task_embedding",
    "writer_from_spec",
]
