"""A faiss index over expert example embeddings (retrieval) and their centroids.

Contract: `ExampleIndex({expert: vectors [n_i, d]})` indexes every row (inner product on
unit vectors = cosine). `max_cosine(queries, k, top_m=1)` returns, per query, the best `k`
experts by their highest-scoring example (top_m > 1: by the mean of their m best-scoring
examples among the rows searched, as semantic-router aggregates its matches), best first.
It searches the `depth` nearest
rows, so an expert none of whose rows is among them is not a candidate: with thousands of
experts the search stays a flat top-M scan instead of E dot products per example.
`centroids()` gives the unit-norm mean embedding per expert. Up to `exact_limit` rows
(20,000) the search is exact (flat inner product); above it, an HNSW graph (M=32,
efSearch=128) keeps a query under a millisecond at the price of approximate recall.
faiss is imported lazily.
"""

from __future__ import annotations

import numpy as np

from routers.encoders import normalise

EXACT_LIMIT = 20_000  # rows; above this the index is approximate (HNSW), see bench/routing.py


class ExampleIndex:
    def __init__(self, vectors: dict[str, np.ndarray], exact_limit: int = EXACT_LIMIT):
        import faiss

        self.experts = sorted(vectors)
        mats = [np.asarray(vectors[e], dtype=np.float32) for e in self.experts]
        self.dim = mats[0].shape[1] if mats else 0
        self.labels = (
            np.concatenate([np.full(len(m), i) for i, m in enumerate(mats)]) if mats else np.zeros(0, int)
        )
        rows = int(sum(len(m) for m in mats))
        if (
            rows > exact_limit
        ):  # flat search grows with rows (~17 ms at 80k x 384 on 2 cores); HNSW stays < 1 ms
            self.index = faiss.IndexHNSWFlat(self.dim, 32, faiss.METRIC_INNER_PRODUCT)
            self.index.hnsw.efConstruction, self.index.hnsw.efSearch = 80, 128
        else:
            self.index = faiss.IndexFlatIP(max(self.dim, 1))
        if mats:
            self.index.add(np.ascontiguousarray(np.concatenate(mats)))
        self._centroids = normalise(np.stack([m.mean(0) for m in mats])) if mats else np.zeros((0, 1))

    def __len__(self) -> int:
        return len(self.experts)

    def max_cosine(
        self, queries: np.ndarray, k: int, depth: int = 256, top_m: int = 1
    ) -> list[list[tuple[str, float]]]:
        if not self.experts:
            return [[] for _ in queries]
        depth = min(self.index.ntotal, max(depth, 4 * k, top_m * k))
        sims, rows = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), depth)
        out = []
        for s, r in zip(sims, rows):
            hits: dict[str, list[float]] = {}
            for score, row in zip(s, r):
                if row < 0:
                    continue
                mine = hits.setdefault(self.experts[self.labels[row]], [])
                if len(mine) < top_m:  # rows come best first: an expert's first m hits are its best
                    mine.append(float(score))
            best = {name: sum(v) / len(v) for name, v in hits.items()}
            out.append(sorted(best.items(), key=lambda kv: -kv[1])[:k])
        return out

    def centroids(self) -> tuple[list[str], np.ndarray]:
        return self.experts, self._centroids
