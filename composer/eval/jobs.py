"""Evaluation jobs behind POST /v1/evaluations: validated at once, run in the background.

Contract: `EvalJobs(composer_for, out_root, cache_path)`; `start(source, routers, limit,
settings)` loads the benchmark and parses the specs synchronously (so a bad request fails
with `BenchmarkError` / `RouterError` before anything runs), then queues the job on one
worker thread (jobs run one at a time: they are CPU-bound) and returns its view.
`get(id, records=False)` -> {id, status: queued|running|done|failed, created, benchmark,
routers, progress: {label: {done, total}}, done, total, summary (when done), error (when
failed: a request error's message, never internals), records (if asked)}. Each finished
job also writes its report under `out_root/<id>/` (results.json, report.md, plots), so
`composer fit ... --from-eval` can use it. `KeyError` for an unknown id.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from pathlib import Path

from composer.errors import ComposerError
from composer.eval.benchmark import BenchmarkError, load_benchmark
from composer.eval.cache import OutputCache
from composer.eval.report import write_report
from composer.eval.runner import evaluate
from composer.eval.specs import parse_specs
from composer.priority import lower_priority
from registry import RegistryError
from routers import RouterError

log = logging.getLogger(__name__)


def public_error(e: Exception) -> str:
    """What a job's viewer may read: a request error's own message, else nothing internal."""
    if isinstance(e, (ComposerError, RouterError, RegistryError, BenchmarkError)):
        return str(e)
    return "internal error (see the server log)"


class EvalJobs:
    def __init__(self, composer_for, out_root: str | Path, cache_path: str | Path | None):
        self.composer_for, self.out_root = composer_for, Path(out_root)
        self.cache = OutputCache(cache_path) if cache_path else None
        self.jobs: dict[str, dict] = {}
        self._work: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        threading.Thread(target=self._loop, daemon=True, name="composer-eval").start()

    def start(
        self, source, routers, limit: int | None = None, settings: dict | None = None, base: str | None = None
    ) -> dict:
        composer = self.composer_for(base)
        examples = load_benchmark(source, composer.registry, limit)
        specs = parse_specs(routers, [r.name for r in composer.experts()])
        job_id = uuid.uuid4().hex[:16]
        job = {
            "id": job_id,
            "status": "queued",
            "created": int(time.time()),
            "benchmark": source if isinstance(source, str) else f"{len(source)} inline examples",
            "routers": [s.label for s in specs],
            "examples": len(examples),
            "progress": {s.label: {"done": 0, "total": len(examples)} for s in specs},
            "done": 0,
            "total": len(examples) * len(specs),
        }
        with self._lock:
            self.jobs[job_id] = job
        self._work.put((job_id, composer, examples, specs, dict(settings or {})))
        return self.get(job_id)

    def get(self, job_id: str, records: bool = False) -> dict:
        with self._lock:
            job = self.jobs[job_id]
            view = {k: v for k, v in job.items() if k != "records"}
            view["progress"] = {k: dict(v) for k, v in job["progress"].items()}
            if records and "records" in job:
                view["records"] = job["records"]
            return view

    def list(self) -> list[dict]:
        with self._lock:
            ids = list(self.jobs)
        return [self.get(i) for i in ids]

    def _progress(self, job_id: str, label: str, done: int, total: int) -> None:
        with self._lock:
            job = self.jobs[job_id]
            job["progress"][label] = {"done": done, "total": total}
            job["done"] = sum(p["done"] for p in job["progress"].values())

    def _loop(self) -> None:
        lower_priority()  # evaluations yield the cores to serving
        while True:
            job_id, composer, examples, specs, settings = self._work.get()
            with self._lock:
                self.jobs[job_id]["status"] = "running"
            try:
                run = evaluate(
                    composer,
                    examples,
                    specs,
                    settings,
                    self.cache,
                    benchmark=self.jobs[job_id]["benchmark"],
                    on_progress=lambda label, d, t, j=job_id: self._progress(j, label, d, t),
                )
                summary = write_report(run, self.out_root / job_id)
                with self._lock:
                    self.jobs[job_id].update(
                        status="done",
                        summary=summary,
                        records=run.records,
                        cache={"generated": run.generated, "cached": run.cached},
                    )
            except Exception as e:
                log.exception("evaluation %s failed", job_id)
                with self._lock:
                    self.jobs[job_id].update(status="failed", error=public_error(e))
