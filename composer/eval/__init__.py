"""Batch evaluation: routers side by side over a benchmark (DESIGN §6).

    from composer.eval import load_benchmark, evaluate, write_report
    examples = load_benchmark("demo", registry)          # or a JSONL path
    run = evaluate(composer, examples, "all")            # RouterSpec list or "all" / "a,b,c"
    write_report(run, "eval-out/")                       # results.json, report.md, PNGs

benchmark.py reads and checks benchmarks, specs.py names what runs (routers, baselines,
per-expert runs), cache.py keeps outputs per (example, execution, decoding settings),
runner.py routes and executes, report.py summarises and plots. `ray_cluster.eval` runs the
same shards on Ray actors.
"""

from composer.eval.benchmark import BenchmarkError, Example, load_benchmark
from composer.eval.report import summarise, write_report
from composer.eval.runner import EvalRun, evaluate
from composer.eval.specs import RouterSpec, parse_specs

__all__ = [
    "BenchmarkError",
    "EvalRun",
    "Example",
    "RouterSpec",
    "evaluate",
    "load_benchmark",
    "parse_specs",
    "summarise",
    "write_report",
]
