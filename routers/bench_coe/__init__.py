"""bench_coe (Bench-CoE): routers trained from benchmark results, at query or subject level."""
from routers.bench_coe.fit import fit_bench_coe
from routers.bench_coe.router import BenchCoERouter

__all__ = ["BenchCoERouter", "fit_bench_coe"]
