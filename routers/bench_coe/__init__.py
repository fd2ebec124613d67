"""bench_coe (Bench-CoE): routers trained from benchmark results, at query or subject level."""

from routers.base import register_method
from routers.bench_coe.config import BenchCoEConfig
from routers.bench_coe.fit import fit_bench_coe
from routers.bench_coe.router import BenchCoERouter

register_method("bench_coe", BenchCoERouter, BenchCoEConfig, fit=fit_bench_coe)

__all__ = ["BenchCoERouter", "fit_bench_coe"]
