"""Checks that an expert can be served: a short forward alone and per gate kind, and its files.

Contract:
- `probe(host, name, gates=())`: one short forward of expert `name` (loaded on `host`) alone
  (select) and, for each gate kind in `gates`, gated by it; the output must be finite.
  Raises what failed (a `LayerError` names the module).
- `prove(host, path, vectors=None)` is registration's use of it: the staged adapter
  installed on the private fitting host under a temporary name, its gate vectors
  ({kind: {module: vector}}) installed, probed, removed; any failure is a
  `registry.ValidationError` saying what failed (and where).
- `changed_files(record)`: the stored files of an expert whose sha256 is no longer the one
  recorded at registration (a disk fault, a hand edit).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import torch

from composer.host import Gate, Host
from registry import ValidationError
from registry.records import ExpertRecord
from routers.token import gate_kinds


def probe(host: Host, name: str, gates: Iterable[str] = ()) -> None:
    vocab = host.model.get_input_embeddings().num_embeddings
    ids = torch.arange(min(8, vocab)).unsqueeze(0)  # the host moves it to its device
    rows = [{name: 1.0}] + [Gate(k, gate_kinds()[k].score, top_k=1, experts=[name]) for k in gates]
    for row in rows:
        out = host.logits(ids, mixtures=[row])
        if not bool(torch.isfinite(out).all()):
            raise ValueError(f"expert {name!r} makes the model's output NaN or Inf")


def prove(host: Host, path, vectors: dict[str, dict] | None = None) -> None:
    name = "__registration-probe__"
    try:
        host.add_adapter(name, path)
        try:
            for kind, vecs in (vectors or {}).items():
                host.set_vectors(name, kind, {m: gate_kinds()[kind].prepare(v) for m, v in vecs.items()})
            probe(host, name, vectors or {})
        finally:
            host.remove_adapter(name)
    except Exception as e:  # noqa: BLE001 - whatever fails, the adapter cannot be served: refuse it
        raise ValidationError(f"the adapter cannot be served: {type(e).__name__}: {e}") from None


def changed_files(rec: ExpertRecord) -> list[str]:
    bad = []
    for file, want in (rec.sha256 or {}).items():
        path = rec.path / file
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != want:
            bad.append(file)
    return bad
