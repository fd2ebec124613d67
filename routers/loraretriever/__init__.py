"""loraretriever (Zhao et al. 2024): retrieve the top-k LoRAs, then merge or ensemble them."""

from routers.base import register_method
from routers.embeddings import EMBEDDINGS
from routers.loraretriever.config import LoraRetrieverConfig
from routers.loraretriever.router import LoraRetrieverRouter

register_method("loraretriever", LoraRetrieverRouter, LoraRetrieverConfig, artifacts=[EMBEDDINGS])

__all__ = ["LoraRetrieverRouter"]
