"""Whole-model experts: any HF causal LM directory registered as `kind=model`, loaded on demand.

Contract: `ModelPool(registry, max_resident, load=Host.load)` (the settings' `max_models`;
`load(path, name)` loads a model on the settings' device and dtype); `get(name)` returns a `composer.host.Host`
for the expert's current version, loading it on first use and evicting the least recently
used one when more than `max_resident` are resident (a new version replaces the old one).
`resident()` lists the names held, most recent last; `drop(name)` forgets one (removal).
Thread-safe: loads are serialised by the pool's lock, and each model's own `Host.lock`
serialises its forward passes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from composer.host import Host
from registry import Registry


class ModelPool:
    def __init__(self, registry: Registry, max_resident: int, load=None):
        if max_resident < 1:
            raise ValueError("max_resident must be >= 1")
        self.registry, self.max_resident = registry, max_resident
        self._load = load or (lambda path, name: Host.load(path, name=name))
        self._hosts: OrderedDict[str, tuple[str, Host]] = OrderedDict()  # name -> (digest, host)
        self._lock = threading.Lock()

    def get(self, name: str) -> Host:
        rec = self.registry.get(name)
        if rec.kind != "model":
            raise ValueError(f"{name!r} is a {rec.kind} expert, not a whole model")
        with self._lock:
            held = self._hosts.get(name)
            if held and held[0] == rec.digest:
                self._hosts.move_to_end(name)
                return held[1]
            host = self._load(rec.path, name)
            self._hosts[name] = (rec.digest, host)
            self._hosts.move_to_end(name)
            while len(self._hosts) > self.max_resident:
                self._hosts.popitem(last=False)
            return host

    def resident(self) -> list[str]:
        with self._lock:
            return list(self._hosts)

    def drop(self, name: str) -> None:
        with self._lock:
            self._hosts.pop(name, None)
