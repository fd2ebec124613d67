"""Global routing latency: sentence encoding + the faiss example index, at 10 / 1,000 / 10,000 experts.

Per-query latency of the retrieval router's two parts — MiniLM encoding of the prompt and
the example-index search (`routers.index.ExampleIndex.max_cosine`, max over each expert's
examples; the centroid variant; and `density`, the default router's kernel density, exact
up to 20,000 rows and over the HNSW search's rows above) — at batch 1 and batch 64 (per
query), with synthetic experts of 8 example embeddings each around their own centre.
Targets: index part (max cosine, and density) <= 1 ms p50 at 10,000 experts; encoding +
index <= 10 ms p50 at batch 1.

    python bench/routing.py [--smoke] [--threads N]
"""

from __future__ import annotations

import numpy as np
from common import args, timed, write

from routers.encoders import MiniLM, normalise
from routers.index import ExampleIndex

EXAMPLES_PER_EXPERT, DIM = 8, 384
PROMPTS = [
    "Write these letters backwards: c a t",
    "Count down from 5",
    "Add the two numbers: 7 5",
    "Translate this sentence into French",
    "Summarise the following report in two lines",
]


def experts(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    centres = normalise(rng.standard_normal((n, DIM)).astype(np.float32))
    return {
        f"e{i:05d}": normalise(
            c + 0.3 * normalise(rng.standard_normal((EXAMPLES_PER_EXPERT, DIM)).astype(np.float32))
        )
        for i, c in enumerate(centres)
    }


def main() -> None:
    a = args(__doc__.splitlines()[0])
    sizes = [10, 100] if a.smoke else [10, 1000, 10000]
    repeat = 5 if a.smoke else 200
    rng = np.random.default_rng(0)
    enc = MiniLM()
    batch = [PROMPTS[i % len(PROMPTS)] + f" #{i}" for i in range(64)]
    enc.encode(batch[:2])  # load the model
    enc1 = timed(lambda: enc.encode(batch[:1]), repeat)
    enc64 = timed(lambda: enc.encode(batch), max(2, repeat // 20))
    q1, q64 = enc.encode(batch[:1]), enc.encode(batch)
    results = [_measure(ExampleIndex(experts(n, rng)), n, q1, q64, enc1, enc64, repeat) for n in sizes]
    last = results[-1]
    targets = {
        f"index <= 1 ms p50 at {last['experts']} experts": last["index_b1_ms"] <= 1.0,
        f"density <= 1 ms p50 at {last['experts']} experts": last["density_b1_ms"] <= 1.0,
        "encoding + index <= 10 ms p50 at batch 1": last["route_b1_ms"] <= 10.0,
    }
    write(
        "routing",
        a,
        results,
        targets,
        [
            "experts",
            "vectors",
            "index_b1_ms",
            "index_b64_per_query_ms",
            "centroid_b1_ms",
            "density_b1_ms",
            "density_b64_per_query_ms",
            "encode_b1_ms",
            "route_b1_ms",
            "route_b64_per_query_ms",
        ],
    )


def _measure(index: ExampleIndex, n: int, q1, q64, enc1: dict, enc64: dict, repeat: int) -> dict:
    _, C = index.centroids()
    idx1 = timed(lambda: index.max_cosine(q1, 1), repeat)
    idx64 = timed(lambda: index.max_cosine(q64, 1), max(2, repeat // 10))
    cen1 = timed(lambda: np.argmax(q1 @ C.T, axis=1), repeat)
    den1 = timed(lambda: index.density(q1, 1, 0.1), repeat)
    den64 = timed(lambda: index.density(q64, 1, 0.1), max(2, repeat // 10))
    row = {
        "experts": n,
        "vectors": n * EXAMPLES_PER_EXPERT,
        "index_b1_ms": idx1["p50_ms"],
        "index_b64_per_query_ms": idx64["p50_ms"] / 64,
        "centroid_b1_ms": cen1["p50_ms"],
        "density_b1_ms": den1["p50_ms"],
        "density_b64_per_query_ms": den64["p50_ms"] / 64,
        "encode_b1_ms": enc1["p50_ms"],
        "encode_b64_per_query_ms": enc64["p50_ms"] / 64,
        "route_b1_ms": enc1["p50_ms"] + idx1["p50_ms"],
        "route_b64_per_query_ms": (enc64["p50_ms"] + idx64["p50_ms"]) / 64,
    }
    print(row, flush=True)
    return row


if __name__ == "__main__":
    main()
