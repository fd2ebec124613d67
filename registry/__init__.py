"""Composer's expert registry: LoRA adapters, base models and whole-model experts.

Metadata lives in a SQL database (SQLite by default, any SQLAlchemy URL), files in a local
artifact store; registration is validated and atomic. Entry point: ``Registry``.

    from registry import Registry
    reg = Registry()                      # ~/.composer, or Registry(home=..., db_url=...)
    reg.register("/models/tiny", "tiny", kind="base")
    reg.register("/adapters/math", "math", base="tiny", examples=["2+2="])
    reg.list()
"""

from .errors import ConflictError, NotFoundError, RegistryError, ValidationError
from .records import ArtifactRecord, ExpertRecord
from .registry import DEFAULT_HOME, Registry
from .validate import NAME_RE

__all__ = [
    "DEFAULT_HOME",
    "NAME_RE",
    "ArtifactRecord",
    "ConflictError",
    "ExpertRecord",
    "NotFoundError",
    "Registry",
    "RegistryError",
    "ValidationError",
]
