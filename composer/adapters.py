"""Which LoRA experts one host holds: loads, removals, quarantine (vLLM's WorkerLoRAManager).

Contract: `AdapterManager(ctx, load=load_host)` owns the host of the base model of `ctx` (a
`routers.RouterContext`: its registry, its base, and how artifacts are keyed).
- `host` loads the base model on first use (`load(path, name)`) and `sync()`s it.
- `sync()` makes the host hold exactly the ready LoRA experts of `base` in the registry
  that are not quarantined: new experts and new versions are loaded, removed ones dropped,
  and each loaded expert's token-gate vectors (one per registered `GateKind`) are read from
  its stored artifacts and installed, prepared for their kind. Nothing is fitted here: an
  expert without an artifact is served, but not scored by that gate kind, until the
  artifact appears (`composer fit NAME`; the next sync after any registry write loads it).
  An adapter the host refuses is quarantined with the reason; the others keep serving.
  Returns True when the set of resident experts changed. Cheap when nothing changed (the
  registry answers its list from memory).
- `quarantine(name, version, reason)`; `quarantined()` -> {name: {"version", "reason"}}.
- `servable()`: the ready LoRA experts of `base` minus the quarantined ones (what routing
  may pick); `resident()`: the names the host holds now (none before it is loaded).
Thread-safe: one re-entrant lock; the host's own lock serialises forwards with changes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from composer.host import Host
from registry.records import ExpertRecord
from routers.artifacts import load as load_artifact
from routers.token import gate_kinds, vectors_from_bytes

log = logging.getLogger(__name__)


def load_host(path, name: str) -> Host:
    return Host.load(path, name=name)


class AdapterManager:
    def __init__(self, ctx, load: Callable[..., Host] = load_host):
        self.ctx, self.registry, self.base, self._load = ctx, ctx.registry, ctx.base, load
        self._host: Host | None = None
        self._loaded: dict[str, ExpertRecord] = {}  # name -> the version the host holds
        self._gateless: dict[str, set[str]] = {}  # name -> gate kinds it has no vectors for yet
        self._revision: str | None = None
        self._quarantine: dict[tuple[str, int], str] = {}
        self._lock = threading.RLock()

    @property
    def host(self) -> Host:
        with self._lock:
            if self._host is None:
                self._host = self._load(self.registry.get(self.base).path, self.base)
            self.sync()
            return self._host

    def servable(self) -> list[ExpertRecord]:
        return [
            r
            for r in self.registry.list(kind="lora", base=self.base)
            if (r.name, r.version) not in self._quarantine
        ]

    def resident(self) -> list[str]:
        return list(self._loaded)

    def quarantined(self) -> dict[str, dict]:
        return {name: {"version": v, "reason": why} for (name, v), why in self._quarantine.items()}

    def quarantine(self, name: str, version: int, reason: str) -> None:
        with self._lock:
            log.warning("expert %s v%d quarantined: %s", name, version, reason)
            self._quarantine[(name, version)] = reason
            if self._host is not None and name in self._loaded and self._loaded[name].version == version:
                self._drop(name)

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
        try:
            self._host.add_adapter(rec.name, rec.path)
        except (ValueError, OSError) as e:
            self._quarantine[(rec.name, rec.version)] = str(e)
            log.warning("expert %s v%d cannot be served, quarantined: %s", rec.name, rec.version, e)
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
            except (ValueError, KeyError) as e:
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
