"""spectr (Fleshman & Van Durme, COLM 2025): training-free per-token routing by each expert's
whole singular spectrum, where Arrow keeps only its top singular vector."""

from routers.base import register_method
from routers.spectr.config import SpectrConfig
from routers.spectr.fit import SPECTRA, fit_spectra, spectrum
from routers.spectr.router import SPECTR, SpectrRouter

register_method("spectr", SpectrRouter, SpectrConfig, artifacts=[SPECTRA], gate=SPECTR)

__all__ = ["SPECTR", "SPECTRA", "SpectrRouter", "fit_spectra", "spectrum"]
