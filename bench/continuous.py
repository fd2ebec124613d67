"""Continuous batching: short requests arriving while a long one runs do not wait behind it.

On the realistic random bench base (hidden 512, 8 layers; `--smoke`: tiny), with 8 LoRA
adapters resident: 32 short requests (8 new tokens, each on one adapter, sent by 32
threads at once) are timed alone, then again while one long request (8x as many new
tokens) is decoding — on the host's continuous-batching loop, and on the static-batch path
(`Host(continuous=False)`, what the host did before: one generation holds the model until
it ends). Target: the shorts' p50 during the long request <= 2x their p50 alone.

    python bench/continuous.py [--smoke] [--threads N]
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from common import CACHE, args, percentiles, random_adapters, realistic_base, write

from composer.host import Host

SHORT, N_SHORT = 8, 32


def shorts(host: Host, names: list[str]) -> dict:
    latencies: list[float] = []

    def one(i: int) -> None:
        t0 = time.perf_counter()
        host.generate([f"sample text {i}"], [{names[i % len(names)]: 1.0}], max_new_tokens=SHORT, chat=False)
        latencies.append(time.perf_counter() - t0)

    with ThreadPoolExecutor(N_SHORT) as pool:
        list(pool.map(one, range(N_SHORT)))
    return percentiles(latencies)


def during_long(host: Host, names: list[str], long_tokens: int) -> tuple[dict, tuple[float, int]]:
    """The shorts' latencies while a long request decodes; how long the long one took and its tokens."""
    started, took = threading.Event(), []

    def long() -> None:
        t0 = time.perf_counter()
        started.set()
        (g,) = host.generate(
            ["a long request " * 4], [{names[0]: 1.0}], max_new_tokens=long_tokens, chat=False
        )
        took.append((time.perf_counter() - t0, len(g.token_ids)))

    runner = threading.Thread(target=long)
    runner.start()
    started.wait()
    time.sleep(0.05)  # bench pacing: let the long request be under way (not a test condition)
    stats = shorts(host, names)
    runner.join()
    return stats, took[0]


def main() -> None:
    a = args(__doc__.splitlines()[0])
    hidden, layers = (128, 2) if a.smoke else (512, 8)
    long_tokens = 8 * SHORT
    root = CACHE / f"mixture-h{hidden}-l{layers}"
    base = realistic_base(root / "base", hidden=hidden, layers=layers, heads=4 if a.smoke else 8)
    paths = random_adapters(base, root / "adapters", 8)
    results = []
    for continuous in (True, False):
        host = Host.load(base, device=a.device, dtype=a.dtype)
        host.continuous = continuous
        names = [f"e{i}" for i in range(len(paths))]
        for n, p in zip(names, paths):
            host.add_adapter(n, p)
        shorts(host, names)  # warm up
        alone = shorts(host, names)
        during, (long_s, long_made) = during_long(host, names, long_tokens)
        results.append(
            {
                "loop": "continuous" if continuous else "static batch",
                "short_tokens": SHORT,
                "long_tokens": long_tokens,
                "alone_p50_ms": alone["p50_ms"],
                "during_long_p50_ms": during["p50_ms"],
                "during/alone": during["p50_ms"] / alone["p50_ms"],
                "during_long_p99_ms": during["p99_ms"],
                "long_s": long_s,
                "long_made": long_made,
            }
        )
    ratio = results[0]["during/alone"]
    write(
        "continuous",
        a,
        results,
        {"shorts' p50 during a long request <= 2x alone (continuous)": ratio <= 2},
        [
            "loop",
            "short_tokens",
            "long_tokens",
            "alone_p50_ms",
            "during_long_p50_ms",
            "during/alone",
            "during_long_p99_ms",
            "long_s",
            "long_made",
        ],
    )


if __name__ == "__main__":
    main()
