"""Serving throughput: REST on Ray Serve with 1, 8 and 32 concurrent clients vs the in-process API.

The same held-in demo prompts (chat completions, router "retrieval", greedy, 16 tokens)
sent by C concurrent clients over HTTP to `composer serve` (Ray Serve, host batching) and,
as the baseline, by C threads calling `Composer.generate` in this process (one prompt per
call, no server); also the in-process upper bound of one batch with every prompt. Reports
requests/s and p50/p99 latency. Target: REST throughput >= 0.8x in-process at 32 clients.

    python bench/serving.py [--smoke] [--home COMPOSER_HOME]
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from common import args, demo_home, percentiles, server, write

TOKENS = 16


def run_clients(clients: int, prompts: list[str], call) -> dict:
    latencies: list[float] = []

    def one(p: str) -> None:
        t0 = time.perf_counter()
        call(p)
        latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, prompts))
    wall = time.perf_counter() - t0
    return {"req_s": len(prompts) / wall, **percentiles(latencies)}


def main() -> None:
    a = args(__doc__.splitlines()[0], home={"help": "registry with the demo ocean"})
    home = demo_home(a.home)
    rows = [json.loads(x) for x in (home / "demo" / "benchmark.jsonl").read_text().splitlines()]
    n = 16 if a.smoke else 256
    prompts = [r["prompt"] for r in rows if r["split"] == "held-in"][:n]
    levels = [1, 4] if a.smoke else [1, 8, 32]

    from composer import Composer
    from registry import Registry

    c = Composer(Registry(home=home), default_router="retrieval")
    c.generate(prompts[:2], max_new_tokens=TOKENS)  # load everything
    local = {k: run_clients(k, prompts, lambda p: c.generate([p], max_new_tokens=TOKENS)) for k in levels}
    t0 = time.perf_counter()
    c.generate(prompts, max_new_tokens=TOKENS)
    one_batch = len(prompts) / (time.perf_counter() - t0)

    results = []
    with (
        server(home) as url,
        httpx.Client(base_url=url, timeout=300, limits=httpx.Limits(max_connections=64)) as http,
    ):

        def rest(p: str) -> None:
            r = http.post(
                "/v1/chat/completions",
                json={
                    "model": "composer",
                    "max_tokens": TOKENS,
                    "messages": [{"role": "user", "content": p}],
                },
            )
            r.raise_for_status()

        run_clients(2, prompts[:4], rest)  # warm up
        for k in levels:
            remote = run_clients(k, prompts, rest)
            results.append(
                {
                    "clients": k,
                    "rest_req_s": remote["req_s"],
                    "rest_p50_ms": remote["p50_ms"],
                    "rest_p99_ms": remote["p99_ms"],
                    "inproc_req_s": local[k]["req_s"],
                    "inproc_p50_ms": local[k]["p50_ms"],
                    "inproc_one_batch_req_s": one_batch,
                    "rest/inproc": remote["req_s"] / local[k]["req_s"],
                }
            )
            print(results[-1], flush=True)
    last = results[-1]
    targets = {f"REST >= 0.8x in-process at {last['clients']} clients": last["rest/inproc"] >= 0.8}
    write(
        "serving",
        a,
        results,
        targets,
        [
            "clients",
            "rest_req_s",
            "rest_p50_ms",
            "rest_p99_ms",
            "inproc_req_s",
            "inproc_p50_ms",
            "inproc_one_batch_req_s",
            "rest/inproc",
        ],
    )


if __name__ == "__main__":
    main()
