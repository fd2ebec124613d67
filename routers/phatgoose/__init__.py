"""phatgoose (Muqeeth et al. 2024): per-token, per-module gates fitted post-hoc per expert."""
from routers.phatgoose.fit import fit_gates
from routers.phatgoose.router import PhatgooseRouter

__all__ = ["PhatgooseRouter", "fit_gates"]
