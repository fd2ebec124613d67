"""Nearest-neighbour prediction on sentence embeddings: CoE's classifier, Bench-CoE's regressor.

Contract: a fitted table is labelled embeddings X [n, d] (unit rows) and targets
Y [n, m] (one-hot categories, or per-expert scores with NaN = not evaluated).
`predict(table, Q, k, temperature)` averages the targets of each query's `k` nearest rows
(cosine, faiss), weighted by softmax(cosine / temperature) and ignoring NaN, giving
class probabilities or predicted scores [q, m]. `to_bytes`/`from_bytes` store the table as
safetensors (never pickle). A neighbour vote generalises to unseen phrasings better than a
linear probe fitted on a few phrasings per category (measured on the demo ocean: 97% vs
87% on held-back paraphrases).
"""

from __future__ import annotations

import numpy as np
import torch
from safetensors.torch import load, save


def to_bytes(X: np.ndarray, Y: np.ndarray) -> bytes:
    return save(
        {
            "X": torch.as_tensor(np.ascontiguousarray(X, dtype=np.float32)),
            "Y": torch.as_tensor(np.ascontiguousarray(Y, dtype=np.float32)),
        }
    )


def from_bytes(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    t = load(data)
    return t["X"].numpy(), t["Y"].numpy()


def predict(
    table: tuple[np.ndarray, np.ndarray], Q: np.ndarray, k: int = 10, temperature: float = 0.05
) -> np.ndarray:
    import faiss

    X, Y = table
    index = faiss.IndexFlatIP(X.shape[1])
    index.add(np.ascontiguousarray(X, dtype=np.float32))
    k = min(k, len(X))
    sims, rows = index.search(np.ascontiguousarray(Q, dtype=np.float32), k)
    w = np.exp((sims - sims[:, :1]) / temperature)[:, :, None]  # [q, k, 1], best neighbour = 1
    y = Y[rows]  # [q, k, m]
    known = ~np.isnan(y)
    num = (np.where(known, y, 0.0) * w).sum(1)
    den = (known * w).sum(1)
    return np.where(den > 0, num / np.maximum(den, 1e-12), np.nan)
