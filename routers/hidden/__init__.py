"""hidden: per-token routing by each expert's mean hidden state at every module it adapts
(the hidden-state prototypes of mttl's `hidden_state_computer`, scored like PHATGOOSE)."""

from routers.base import register_method
from routers.hidden.config import HiddenConfig
from routers.hidden.fit import CENTROIDS, fit_centroids
from routers.hidden.router import HIDDEN, HiddenRouter

register_method("hidden", HiddenRouter, HiddenConfig, artifacts=[CENTROIDS], gate=HIDDEN)

__all__ = ["CENTROIDS", "HIDDEN", "HiddenRouter", "fit_centroids"]
