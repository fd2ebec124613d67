"""Which LoRA experts one host holds: loads, removals, quarantine (vLLM's WorkerLoRAManager).

Contract: `AdapterManager(ctx, load=load_host)` owns the host of the base model of `ctx` (a
`routers.RouterContext`: its registry, its base, and how artifacts are keyed).
- `host` loads the base model on first use (`load(path, name)`) and `sync()`s it.
- `sync()` makes the host hold exactly the servable experts: new experts and new versions
  are loaded, removed or quarantined ones dropped, and each loaded expert's token-gate
  vectors (one per registered `GateKind`) are read from its stored artifacts and installed,
  prepared for their kind. Nothing is fitted here: an expert without an artifact is served,
  but not scored by that gate kind, until the artifact appears (`composer fit NAME`; the
  next sync after any registry write loads it). Returns True when the resident set changed.
- No adapter can stop the host: one whose stored files changed since registration (sha256),
  or that the host refuses or fails to load, is quarantined with the reason and the others
  keep serving. `isolate(names)` runs each named expert alone through `probe` on the host
  and quarantines those that fail (the executor calls it when a batch fails inside a layer).
- `quarantine(name, version, reason)` records it in the registry, so every process takes
  the version out of routing (`servable()`), and reports it (`quarantined()`);
  `Registry.release` lifts it.
- `probe(host, name, gates=())`: one short forward of expert `name` alone (select) and,
  for each gate kind in `gates`, gated by it; the output must be finite. Raises what failed
  (a `LayerError` names the module). `prove(host, path, vectors)` is registration's use of
  it: the staged adapter on the private fitting host, before anything is committed.
- `servable()`: ready LoRA experts of `base` minus the quarantined ones (what routing may
  pick); `resident()`: the names the host holds now (none before it is loaded).
Thread-safe: one re-entrant lock; the host's own lock serialises forwards with changes.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterable

import torch

from composer.host import Gate, Host
from registry import ValidationError
from registry.records import ExpertRecord
from routers.artifacts import load as load_artifact
from routers.token import gate_kinds, vectors_from_bytes

log = logging.getLogger(__name__)


def load_host(path, name: str, device: str = "auto", dtype: str = "auto") -> Host:
    return Host.load(path, name=name, device=device, dtype=dtype)


def probe(host: Host, name: str, gates: Iterable[str] = ()) -> None:
    """Run expert `name` (loaded on `host`) alone, then gated by each kind in `gates`."""
    vocab = host.model.get_input_embeddings().num_embeddings
    ids = torch.arange(min(8, vocab)).unsqueeze(0)  # the host moves it to its device
    rows = [{name: 1.0}] + [Gate(k, gate_kinds()[k].score, top_k=1, experts=[name]) for k in gates]
    for row in rows:
        out = host.logits(ids, mixtures=[row])
        if not bool(torch.isfinite(out).all()):
            raise ValueError(f"expert {name!r} makes the model's output NaN or Inf")


def prove(host: Host, path, vectors: dict[str, dict] | None = None) -> None:
    """Registration's check that a staged adapter can be served: install it on `host` (a
    private fitting host), install its gate vectors ({kind: {module: vector}}), `probe` it,
    remove it. Any failure is a `ValidationError` saying what failed (and where)."""
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
    """Stored files of `rec` whose sha256 is no longer the one recorded at registration."""
    bad = []
    for file, want in (rec.sha256 or {}).items():
        path = rec.path / file
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != want:
            bad.append(file)
    return bad


class AdapterManager:
    def __init__(self, ctx, load: Callable[..., Host] = load_host):
        self.ctx, self.registry, self.base, self._load = ctx, ctx.registry, ctx.base, load
        self._host: Host | None = None
        self._loaded: dict[str, ExpertRecord] = {}  # name -> the version the host holds
        self._gateless: dict[str, set[str]] = {}  # name -> gate kinds it has no vectors for yet
        self._revision: str | None = None
        self._local: dict[
            tuple[str, int], str
        ] = {}  # quarantined here, in case the registry cannot record it
        self._lock = threading.RLock()

    @property
    def host(self) -> Host:
        with self._lock:
            if self._host is None:
                self._host = self._load(self.registry.get(self.base).path, self.base)
            self.sync()
            return self._host

    def quarantined(self) -> dict[tuple[str, int], str]:
        return {**{k: v["reason"] for k, v in self.registry.quarantined().items()}, **self._local}

    def servable(self) -> list[ExpertRecord]:
        out = self.quarantined()
        return [r for r in self.registry.list(kind="lora", base=self.base) if (r.name, r.version) not in out]

    def resident(self) -> list[str]:
        return list(self._loaded)

    def quarantine(self, name: str, version: int, reason: str) -> None:
        with self._lock:
            log.warning("expert %s v%d quarantined: %s", name, version, reason)
            try:
                self.registry.quarantine(name, version, reason)
            except Exception:  # kept out of routing here even if the registry cannot record it
                log.exception("could not record the quarantine of %s v%d in the registry", name, version)
                self._local[(name, version)] = reason
            if self._host is not None and name in self._loaded and self._loaded[name].version == version:
                self._drop(name)

    def isolate(self, names: Iterable[str]) -> list[str]:
        """Probe each resident expert of `names` alone; quarantine and return those that fail."""
        broken = []
        with self._lock:
            for name in dict.fromkeys(names):
                rec = self._loaded.get(name)
                if rec is None:
                    continue
                try:
                    probe(self._host, name, set(gate_kinds()) - self._gateless.get(name, set()))
                except Exception as e:  # noqa: BLE001 - whatever it is, this expert cannot serve
                    self.quarantine(name, rec.version, f"failed in a forward pass: {e}")
                    broken.append(name)
        return broken

    def sync(self) -> bool:
        with self._lock:
            if self._host is None:
                return False
            want = {r.name: r for r in self.servable()}
            stale = [n for n, rec in self._loaded.items() if n not in want or want[n].digest != rec.digest]
            for name in stale:
                self._drop(name)
            new = [rec for name, rec in want.items() if name not in self._loaded]
            for rec in new:
                self._add(rec)
            if self._gateless and (revision := self.registry.revision()) != self._revision:
                self._revision = revision  # something was written: a missing artifact may be there now
                for name, kinds in list(self._gateless.items()):
                    self._install_vectors(self._loaded[name], kinds)
            return bool(stale or new)

    def _drop(self, name: str) -> None:
        self._host.remove_adapter(name)
        del self._loaded[name]
        self._gateless.pop(name, None)

    def _add(self, rec: ExpertRecord) -> None:
        changed = changed_files(rec)
        if changed:
            self.quarantine(
                rec.name, rec.version, f"stored files changed since registration: {', '.join(changed)}"
            )
            return
        try:
            self._host.add_adapter(rec.name, rec.path)
        except Exception as e:  # noqa: BLE001 - no adapter may stop the host: quarantine it, serve the others
            self.quarantine(rec.name, rec.version, f"cannot be loaded: {type(e).__name__}: {e}")
            return
        self._loaded[rec.name] = rec
        self._install_vectors(rec, set(gate_kinds()))

    def _install_vectors(self, rec: ExpertRecord, kinds: set[str]) -> None:
        missing = set()
        for name in kinds:
            kind = gate_kinds()[name]
            data = load_artifact(self.ctx, rec, kind.artifact)
            if data is None:
                missing.add(name)
                continue
            try:
                vectors = {m: kind.prepare(v) for m, v in vectors_from_bytes(data).items()}
                self._host.set_vectors(rec.name, name, vectors)
            except Exception as e:  # noqa: BLE001 - unusable vectors only cost this expert its gate
                log.warning(
                    "expert %s v%d: unusable %s vectors (token-level routers skip it): %s",
                    rec.name,
                    rec.version,
                    name,
                    e,
                )
        if missing:
            log.info(
                "expert %s v%d has no %s artifact yet: served, not gated by it (`composer fit %s`)",
                rec.name,
                rec.version,
                "/".join(sorted(missing)),
                " / ".join(sorted(missing)),
            )
            self._gateless[rec.name] = missing
        else:
            self._gateless.pop(rec.name, None)
