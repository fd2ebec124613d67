"""A faiss index over expert example embeddings (retrieval) and their centroids.

Contract: `ExampleIndex({expert: vectors [n_i, d]})` indexes every row (inner product on
unit vectors = cosine). `max_cosine(queries, k, top_m=1)` returns, per query, the best `k`
experts by their highest-scoring example (top_m > 1: by the mean of their m best-scoring
examples among the rows searched, as semantic-router aggregates its matches), best first.
It searches the `depth` nearest
rows, so an expert none of whose rows is among them is not a candidate: with thousands of
experts the search stays a flat top-M scan instead of E dot products per example.
`centroids()` gives the unit-norm mean embedding per expert. `density(queries, k,
bandwidth)` ranks experts by the kernel density of their examples at the query (a Parzen
window over cosines, the mean over *all* of an expert's n examples):
    score = 1 + b * log( (1/n) * sum_i exp((cos_i - 1) / b) )
in cosine units: b -> 0 gives the max cosine, a large b the mean cosine; the mean (not the
sum) keeps experts with few examples on equal terms with those with many. Up to
`exact_limit` rows (20,000) search and density are exact (flat inner product over every
row); above it, an HNSW graph (M=32, efSearch=128) keeps a query under a millisecond at the
price of approximate recall, and the density counts only the `depth` rows found (rows not
found add nothing: a lower bound). faiss is imported lazily.
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
        every = np.ascontiguousarray(np.concatenate(mats)) if mats else np.zeros((0, 1), np.float32)
        if mats:
            self.index.add(every)
        self._rows = every if rows <= exact_limit else None  # exact density reads every row
        counts = np.array([len(m) for m in mats], dtype=int)
        self._all_counts = counts
        self._held = np.flatnonzero(counts)  # experts with rows: the density's segments
        self._counts = counts[self._held]
        self._starts = (np.cumsum(counts) - counts)[self._held]
        means = [m.mean(0) if len(m) else np.zeros(self.dim, np.float32) for m in mats]
        self._centroids = normalise(np.stack(means)) if mats else np.zeros((0, 1))  # no rows: zeros

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

    def density(
        self, queries: np.ndarray, k: int, bandwidth: float, depth: int = 256
    ) -> list[list[tuple[str, float]]]:
        if not len(self._held):
            return [[] for _ in queries]
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if self._rows is None:  # approximate: the rows HNSW finds, one query at a time
            found, rows = self.index.search(q, min(self.index.ntotal, max(depth, 4 * k)))
            scored = [self._sparse_density(s, r, bandwidth) for s, r in zip(found, rows)]
        else:  # exact: every row; an expert's rows are one contiguous segment
            sims = q @ self._rows.T
            top = np.maximum.reduceat(sims, self._starts, axis=1)  # per expert: a stable log-sum-exp
            kernel = np.exp((sims - np.repeat(top, self._counts, axis=1)) / bandwidth)
            dens = top + bandwidth * np.log(np.add.reduceat(kernel, self._starts, axis=1) / self._counts)
            scored = [(self._held, row) for row in dens]
        out = []
        for experts, scores in scored:
            best = np.argpartition(-scores, k - 1)[:k] if len(scores) > k else np.arange(len(scores))
            best = best[np.argsort(-scores[best], kind="stable")]
            out.append([(self.experts[experts[j]], float(scores[j])) for j in best])
        return out

    def _sparse_density(self, sims: np.ndarray, rows: np.ndarray, bandwidth: float):
        """(expert ids, densities) over the experts with a row among those found."""
        ok = rows >= 0
        experts, at = np.unique(self.labels[rows[ok]], return_inverse=True)
        s = sims[ok].astype(np.float64)
        top = np.full(len(experts), -np.inf)
        np.maximum.at(top, at, s)
        mass = np.bincount(at, weights=np.exp((s - top[at]) / bandwidth), minlength=len(experts))
        return experts, top + bandwidth * np.log(mass / self._all_counts[experts])

    def centroids(self) -> tuple[list[str], np.ndarray]:
        return self.experts, self._centroids
