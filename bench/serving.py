"""Serving: REST on Ray Serve under 1, 8 and 64 concurrent clients vs the in-process engine.

The same held-in demo prompts (chat completions, router "retrieval", greedy, 16 tokens) are
answered (1) by the in-process API as one batch (`Composer.generate` on every prompt: the
engine's best case and the baseline), (2) by C threads calling `Composer.generate` in this
process, one prompt per call (they share the host's decoding loop and encoder calls), and
(3) by C HTTP clients against `composer serve` (Ray Serve). Reports requests/s and p50/p99
latency per level, and where one request's time goes (1 client: the Server-Timing spans —
routing and execution in the host replica, the backend call as the ingress saw it — and
what is left for the HTTP proxy and the ingress). And the serving path's own ceiling at the
top level: requests/s for `GET /healthz` (proxy and ingress only) and for a direct
`max_tokens: 1` request (one hop to the host, a single prefill): what REST could do with no
routing and almost no model work. Targets: REST at 64 clients >= 0.5x the in-process
one-batch throughput; one client's REST p50 <= 1.5x the in-process p50.

    python bench/serving.py [--smoke] [--home COMPOSER_HOME]
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from common import args, demo_benchmark, demo_home, percentiles, server, write

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


def spans(header: str) -> dict[str, float]:
    parts = (p.strip().partition(";dur=") for p in header.split(","))
    return {name: float(dur) for name, _, dur in parts}


def main() -> None:
    a = args(__doc__.splitlines()[0], home={"help": "registry with the demo ocean"})
    home = demo_home(a.home)
    rows = demo_benchmark(home)
    n = 16 if a.smoke else 256
    held_in = [r for r in rows if r["split"] == "held-in"][:n]
    prompts = [r["prompt"] for r in held_in]
    levels = [1, 4] if a.smoke else [1, 8, 64]

    from composer import Composer
    from registry import Registry

    c = Composer(Registry(home=home), default_router="retrieval")
    c.generate(prompts[:2], max_new_tokens=TOKENS)  # load everything
    t0 = time.perf_counter()
    c.generate(prompts, max_new_tokens=TOKENS)
    one_batch = len(prompts) / (time.perf_counter() - t0)
    local = {k: run_clients(k, prompts, lambda p: c.generate([p], max_new_tokens=TOKENS)) for k in levels}

    results, timing = [], []
    with (
        server(home) as url,
        httpx.Client(base_url=url, timeout=300, limits=httpx.Limits(max_connections=64)) as http,
    ):

        def rest(p: str) -> None:
            body = {"model": "composer", "max_tokens": TOKENS, "messages": [{"role": "user", "content": p}]}
            r = http.post("/v1/chat/completions", json=body)
            r.raise_for_status()
            if clients_now == 1:
                timing.append(
                    {**spans(r.headers["server-timing"]), "client": r.elapsed.total_seconds() * 1e3}
                )

        clients_now = 2
        run_clients(2, prompts[:8], rest)  # warm up
        for k in levels:
            clients_now = k
            remote = run_clients(k, prompts, rest)
            results.append(
                {
                    "clients": k,
                    "rest_req_s": remote["req_s"],
                    "rest_p50_ms": remote["p50_ms"],
                    "rest_p99_ms": remote["p99_ms"],
                    "inproc_req_s": local[k]["req_s"],
                    "inproc_p50_ms": local[k]["p50_ms"],
                    "one_batch_req_s": one_batch,
                    "rest/one_batch": remote["req_s"] / one_batch,
                    "rest_p50/inproc_p50": remote["p50_ms"] / local[k]["p50_ms"],
                }
            )
            print(results[-1], flush=True)
        k = levels[-1]
        direct = {
            "model": held_in[0]["task"],
            "max_tokens": 1,
            "messages": [{"role": "user", "content": prompts[0]}],
        }
        ceiling = {
            "clients": f"{k}: ceilings (req/s)",
            "healthz_req_s": run_clients(k, prompts, lambda p: http.get("/healthz").raise_for_status())[
                "req_s"
            ],
            "direct_1_token_req_s": run_clients(
                k, prompts, lambda p: http.post("/v1/chat/completions", json=direct).raise_for_status()
            )["req_s"],
        }
        ceiling["direct_1_token/one_batch"] = ceiling["direct_1_token_req_s"] / one_batch
        print(ceiling, flush=True)
    med = {k: statistics.median(t[k] for t in timing) for k in timing[0]}
    hops = {
        "clients": "1 (median ms)",
        "route_ms": med["route"],
        "execute_ms": med["execute"],
        "hop_to_host_ms": med["backend"] - med["route"] - med["execute"],
        "proxy_and_ingress_ms": med["client"] - med["backend"],
        "client_ms": med["client"],
    }
    print(hops, flush=True)
    top, one = results[-1], results[0]
    targets = {
        f"REST at {top['clients']} clients >= 0.5x in-process one batch": top["rest/one_batch"] >= 0.5,
        "one client's REST p50 <= 1.5x in-process": one["rest_p50/inproc_p50"] <= 1.5,
    }
    write(
        "serving",
        a,
        [*results, hops, ceiling],
        targets,
        [
            "clients",
            "rest_req_s",
            "rest_p50_ms",
            "rest_p99_ms",
            "inproc_req_s",
            "inproc_p50_ms",
            "one_batch_req_s",
            "rest/one_batch",
            "rest_p50/inproc_p50",
        ],
    )


if __name__ == "__main__":
    main()
