"""Registration cost: seconds to register an adapter over REST (validate + store + post-hoc
fitting), and the p99 latency of concurrent traffic during it vs without.

One client sends chat completions back to back against `composer serve` on the demo ocean;
latencies are recorded for a quiet window, then while `POST /v1/experts` uploads a copy of
a demo adapter with new examples (full post-hoc fitting: embeddings, PHATGOOSE gates,
Arrow prototypes, GLIDER task embedding) — repeated `--rounds` times with fresh names.
Target: p99 during registration <= 2x p99 without.

    python bench/registration.py [--smoke] [--home COMPOSER_HOME]
"""

from __future__ import annotations

import json
import threading
import time

import httpx
from common import args, demo_home, percentiles, server, write

from composer.serving.archive import pack

PROMPTS = ["Write these letters backwards: c a t", "Count down from 5", "Add the two numbers: 7 5"]


def main() -> None:
    a = args(
        __doc__.splitlines()[0],
        home={"help": "registry with the demo ocean"},
        rounds={"type": int, "default": 3},
    )
    home = demo_home(a.home)
    rounds, quiet_s = (1, 3.0) if a.smoke else (a.rounds, 20.0)
    archive = pack(home / "demo" / "experts" / "length")
    words = [
        "m n o",
        "z y x w",
        "k e",
        "p l u s h",
        "t",
        "g h i j k l",
        "v w",
        "b o a t",
        "c r a b s",
        "f e d",
    ]
    steps = {"phatgoose": {"steps": 10}} if a.smoke else {}
    results = []
    with server(home) as url, httpx.Client(base_url=url, timeout=300) as http:
        samples: list[tuple[float, float]] = []  # (start, latency) of successful requests
        failures: list[tuple[float, float]] = []
        stop = threading.Event()

        def traffic() -> None:
            with httpx.Client(base_url=url, timeout=300) as c:
                i = 0
                while not stop.is_set():
                    t0 = time.perf_counter()
                    r = c.post(
                        "/v1/chat/completions",
                        json={
                            "model": "composer",
                            "max_tokens": 16,
                            "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
                        },
                    )
                    (samples if r.status_code == 200 else failures).append((t0, time.perf_counter() - t0))
                    i += 1

        worker = threading.Thread(target=traffic)
        worker.start()
        while len(samples) < 5:  # warm: first requests load lazily and are not the steady state
            time.sleep(0.2)
        try:
            for k in range(rounds):
                q0 = time.perf_counter()
                time.sleep(quiet_s)
                q1 = r0 = time.perf_counter()
                meta = {
                    "name": f"tally-{k}-{int(time.time())}",
                    "description": "Tallies the letters of a word",
                    "examples": [f"Tally the letters in this word: {w}" for w in words],
                    "fit_options": steps,
                }
                resp = http.post(
                    "/v1/experts", files={"archive": ("a.zip", archive)}, data={"metadata": json.dumps(meta)}
                )
                resp.raise_for_status()
                r1 = time.perf_counter()
                quiet = [lat for t, lat in samples if q0 <= t < q1]
                during = [lat for t, lat in samples if r0 <= t < r1]
                http.delete(f"/v1/experts/{meta['name']}").raise_for_status()
                q, d = percentiles(quiet), percentiles(during)
                results.append(
                    {
                        "round": k,
                        "register_s": r1 - r0,
                        "quiet_p50_ms": q["p50_ms"],
                        "quiet_p99_ms": q["p99_ms"],
                        "during_p50_ms": d["p50_ms"],
                        "during_p99_ms": d["p99_ms"],
                        "requests_during": d["n"],
                        "p99_ratio": (d["p99_ms"] or 0) / (q["p99_ms"] or 1),
                        "failed": sum(r0 <= t < r1 for t, _ in failures),
                    }
                )
                print(results[-1], flush=True)
        finally:
            stop.set()
            worker.join()
    worst = max(r["p99_ratio"] for r in results)
    targets = {
        "p99 during registration <= 2x without": worst <= 2.0,
        "no request failed": all(r["failed"] == 0 for r in results),
    }
    write(
        "registration",
        a,
        results,
        targets,
        [
            "round",
            "register_s",
            "quiet_p50_ms",
            "quiet_p99_ms",
            "during_p50_ms",
            "during_p99_ms",
            "requests_during",
            "p99_ratio",
            "failed",
        ],
    )


if __name__ == "__main__":
    main()
