"""loraretriever (Zhao et al. 2024): retrieve the top-k LoRAs, then merge or ensemble them."""
from routers.loraretriever.router import LoraRetrieverRouter

__all__ = ["LoraRetrieverRouter"]
