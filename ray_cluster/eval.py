"""`composer eval --ray`: the same evaluation, its examples sharded over Ray actors.

Contract: `evaluate_on_ray(settings, base, examples, specs, decoding, cache_path, workers)`
starts (or joins) Ray, creates `workers` actors that each hold a `Composer` on the
registry the `Settings` name (and share the SQLite output cache at `cache_path`), runs every spec
over the shards (`composer.eval.evaluate` on each; the usage summary on shard 0 only),
shows one progress bar per spec as shards finish, and returns one `EvalRun` whose records
are in the same order as an in-process run's. Actors are killed, and a Ray this call
started is shut down, at the end.
"""

from __future__ import annotations

import dataclasses
import os
import time

import ray

from composer.eval.runner import EvalRun
from composer.progress import progress, set_quiet
from composer.settings import Settings


@ray.remote(num_cpus=1)
class EvalWorker:
    def __init__(self, settings: Settings, base: str, cache_path: str | None, threads: int):
        import torch

        from composer.api import Composer
        from composer.eval.cache import OutputCache

        torch.set_num_threads(threads)
        set_quiet(settings.quiet)
        self.composer = Composer(base=base, settings=settings)
        self.cache = OutputCache(cache_path) if cache_path else None

    def run(self, examples, spec, settings, usage: bool) -> EvalRun:
        from composer.eval.runner import evaluate

        return evaluate(self.composer, examples, [spec], settings, self.cache, usage=usage)


def evaluate_on_ray(
    settings: Settings,
    base: str,
    examples,
    specs,
    decoding: dict,
    cache_path: str | None,
    workers: int = 2,
    benchmark: str = "",
) -> EvalRun:
    started = not ray.is_initialized()
    if started:
        ray.init(
            num_cpus=max(workers, 1),
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}},
        )
    threads = max(1, (os.cpu_count() or 1) // max(workers, 1))
    settings = dataclasses.replace(settings, home=str(settings.home_dir.resolve()))  # actors run elsewhere
    actors = [EvalWorker.remote(settings, base, cache_path, threads) for _ in range(max(workers, 1))]
    try:
        order = {e.id: i for i, e in enumerate(examples)}
        shards = [s for s in (examples[i :: len(actors)] for i in range(len(actors))) if s]
        run = EvalRun(benchmark, {}, list(specs))
        for spec in specs:
            t0, bar = time.perf_counter(), progress(desc=spec.label, total=len(examples), unit="ex")
            pending = {
                a.run.remote(s, spec, decoding, k == 0): len(s)
                for k, (a, s) in enumerate(zip(actors, shards))
            }
            records = []
            while pending:
                (ref,), _ = ray.wait(list(pending), num_returns=1)
                part = ray.get(ref)
                bar.update(pending.pop(ref))
                records += part.records
                run.generated, run.cached = run.generated + part.generated, run.cached + part.cached
                run.usage.update(part.usage)
                run.oracle.update(part.oracle)
                run.params, run.settings = part.params, part.settings
            bar.close()
            run.records += sorted(records, key=lambda r: order[r["id"]])
            run.seconds[spec.label] = time.perf_counter() - t0
        return run
    finally:
        for a in actors:
            ray.kill(a)
        if started:
            ray.shutdown()
