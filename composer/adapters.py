"""Which LoRA experts one host holds: residency under a budget, loads, evictions, quarantine
(vLLM's LRUCacheWorkerLoRAManager).

Contract: `AdapterManager(ctx, load=load_host, max_adapters=0, memory_mb=0, pinned=())`
owns the host of the base model of `ctx` (a `routers.RouterContext`: its registry, its
base, and how artifacts are keyed).
- `host` loads the base model on first use (`load(path, name)`) and `sync()`s it.
- Residency: with no budget (`max_adapters` and `memory_mb` 0) every servable expert is
  resident (loaded at `sync()`). With a budget, experts load on demand: `ensure(names)`
  makes them resident (a request waits for its loads, never fails for want of room),
  evicting the least recently used others that are neither needed now nor `pinned`; a set
  that cannot fit even then is a `ComposerError` naming the limit. `holding(names)` ensures
  them and leases them while the block runs (the work on them): another request's load
  cannot evict them half-way; it waits until a lease ends. `size(record)` is an
  expert's adapter bytes on this host; `fits(names)` whether a set fits the budget at once
  (the executor groups rows by it). Token-gate vectors of every expert stay available
  (`bank`, a `GateBank`) for choosing a token plan's candidates when they outnumber the
  budget (`Executor`). `stats()`: resident, bytes, loads, evictions, load seconds.
- `sync()` drops experts removed, replaced by a new version or quarantined, and (no budget)
  loads new ones; each loaded expert's gate vectors are read from its artifacts — nothing is
  fitted here; an expert without an artifact is served but not gated by that kind until it
  appears (`composer fit NAME`; the next sync after any registry write installs it).
- No adapter can stop the host: one whose stored files changed since registration
  (sha256), or that fails to load, is quarantined with the reason and the others keep
  serving. `isolate(names)` probes each named resident expert alone (`composer.probe`) and
  quarantines those that fail. `quarantine(name, version, reason)` records it in the
  registry, so every process takes the version out of routing (`servable()`); `Registry.
  release` lifts it. `resident()`: the names the host holds now.
Thread-safe: one re-entrant lock; the host's own lock serialises forwards with changes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from contextlib import contextmanager

from composer.errors import ComposerError
from composer.gatebank import GateBank
from composer.host import Host
from composer.probe import changed_files, probe
from registry.lora import read_lora
from registry.records import ExpertRecord
from routers.artifacts import load as load_artifact
from routers.token import gate_kinds, vectors_from_bytes

log = logging.getLogger(__name__)


def load_host(path, name: str, device: str = "auto", dtype: str = "auto") -> Host:
    return Host.load(path, name=name, device=device, dtype=dtype)


class AdapterManager:
    def __init__(
        self,
        ctx,
        load: Callable[..., Host] = load_host,
        max_adapters: int = 0,
        memory_mb: int = 0,
        pinned: Iterable[str] = (),
    ):
        self.ctx, self.registry, self.base, self._load = ctx, ctx.registry, ctx.base, load
        self.max_adapters, self.max_bytes, self.pinned = max_adapters, memory_mb * 2**20, set(pinned)
        self.bank = GateBank(ctx)
        self._host: Host | None = None
        self._loaded: OrderedDict[str, ExpertRecord] = OrderedDict()  # least recently used first
        self._bytes: dict[str, int] = {}
        self._gateless: dict[str, set[str]] = {}  # name -> gate kinds it has no vectors for yet
        self._revision: str | None = None
        self._local: dict[tuple[str, int], str] = {}  # quarantined here, if the registry cannot record it
        self._stats = {"loads": 0, "evictions": 0, "load_seconds": 0.0}
        self._lock = threading.RLock()
        self._leases: Counter[str] = Counter()  # experts in use by requests: not evicted meanwhile
        self._freed = threading.Condition(self._lock)

    @property
    def limited(self) -> bool:
        return bool(self.max_adapters or self.max_bytes)

    @property
    def host(self) -> Host:
        with self._lock:
            if self._host is None:
                if self.base is None:
                    raise ComposerError(
                        "this plan needs a base model (the router fell back to it, or it mixes adapters), "
                        "but none is registered: register one (composer register PATH --kind base) or "
                        "give the router a fallback expert"
                    )
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

    def stats(self) -> dict:
        return {"resident": len(self._loaded), "bytes": sum(self._bytes.values()), **self._stats}

    def batching(self) -> dict:
        """The host's decoding-loop counters (`Engine.stats`), once it is loaded and has one."""
        engine = self._host.engine if self._host is not None else None
        return dict(engine.stats) if engine is not None else {}

    # -- budget ---------------------------------------------------------------------------
    def size(self, rec: ExpertRecord) -> int:
        """Bytes the expert's adapter takes on this host (its A and B at the host's dtype)."""
        if rec.name in self._bytes:
            return self._bytes[rec.name]
        per = self._host.dtype.itemsize if self._host is not None else 4
        return int(rec.config.get("num_params", 0)) * per

    def fits(self, records: Iterable[ExpertRecord]) -> bool:
        """Whether these experts, with the pinned ones resident beside them, fit the budget at once."""
        recs = {r.name: r for r in records}
        recs.update((n, r) for n, r in self._loaded.items() if n in self.pinned)
        count_ok = not self.max_adapters or len(recs) <= self.max_adapters
        return count_ok and (not self.max_bytes or sum(self.size(r) for r in recs.values()) <= self.max_bytes)

    def ensure(self, names: Iterable[str]) -> None:
        want = list(dict.fromkeys(names))
        with self._lock:
            self.host  # noqa: B018 - loads and syncs
            records = {r.name: r for r in self.servable()}
            for name in want:
                if name in self._loaded:
                    self._loaded.move_to_end(name)
                elif name in records:
                    self._add(records[name], keep=set(want))

    @contextmanager
    def holding(self, names: Iterable[str]):
        """`ensure(names)`, then lease them: no load evicts them until the block ends (a load
        that needs their room waits for it)."""
        names = list(dict.fromkeys(names))
        with self._lock:
            self.ensure(names)
            self._leases.update(names)
        try:
            yield self._host
        finally:
            with self._lock:
                self._leases.subtract(names)
                self._freed.notify_all()

    def _make_room(self, size: int, keep: set[str]) -> None:
        def over() -> bool:
            count = self.max_adapters and len(self._loaded) + 1 > self.max_adapters
            return bool(count or (self.max_bytes and sum(self._bytes.values()) + size > self.max_bytes))

        while over():
            movable = [n for n in self._loaded if n not in keep and n not in self.pinned]
            victim = next((n for n in movable if self._leases[n] <= 0), None)
            if victim is None and movable:  # room is leased to requests at work: wait for one to end
                self._freed.wait(timeout=60)
                continue
            if victim is None:
                raise ComposerError(
                    f"the request needs more adapters at once than this host holds (COMPOSER_MAX_ADAPTERS="
                    f"{self.max_adapters or 'unlimited'}, COMPOSER_ADAPTER_MEMORY_MB="
                    f"{self.max_bytes // 2**20 or 'unlimited'}): narrow it (top_k, experts) or raise the limit"
                )
            self._drop(victim)
            self._stats["evictions"] += 1

    # -- quarantine -----------------------------------------------------------------------
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

    # -- loading --------------------------------------------------------------------------
    def sync(self) -> bool:
        with self._lock:
            if self._host is None:
                return False
            want = {r.name: r for r in self.servable()}
            stale = [n for n, rec in self._loaded.items() if n not in want or want[n].digest != rec.digest]
            for name in stale:
                self._drop(name)
            new = [rec for name, rec in want.items() if name not in self._loaded]
            if self.limited:  # on demand; only the pinned ones are loaded ahead
                new = [rec for rec in new if rec.name in self.pinned]
            for rec in new:
                self._add(rec, keep=set(want) if not self.limited else {rec.name})
            if self._gateless and (revision := self.registry.revision()) != self._revision:
                self._revision = revision  # something was written: a missing artifact may be there now
                for name, kinds in list(self._gateless.items()):
                    self._install_vectors(self._loaded[name], kinds)
            return bool(stale or new)

    def _drop(self, name: str) -> None:
        self._host.remove_adapter(name)
        del self._loaded[name]
        self._bytes.pop(name, None)
        self._gateless.pop(name, None)

    def _add(self, rec: ExpertRecord, keep: set[str]) -> None:
        t0 = time.perf_counter()
        changed = changed_files(rec)
        if changed:
            self.quarantine(
                rec.name, rec.version, f"stored files changed since registration: {', '.join(changed)}"
            )
            return
        try:
            lw = read_lora(rec.path)
            size = sum(d.A.numel() + d.B.numel() for d in lw.modules.values()) * self._host.dtype.itemsize
            self._make_room(size, keep | {rec.name})
            self._host.add_adapter(rec.name, lw)
        except ComposerError:
            raise
        except Exception as e:  # noqa: BLE001 - no adapter may stop the host: quarantine it, serve the others
            self.quarantine(rec.name, rec.version, f"cannot be loaded: {type(e).__name__}: {e}")
            return
        self._loaded[rec.name], self._bytes[rec.name] = rec, size
        self._install_vectors(rec, set(gate_kinds()))
        self._stats["loads"] += 1
        self._stats["load_seconds"] += time.perf_counter() - t0

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
