"""Service settings: limits, auth and where the registry lives, from the environment.

Contract: `Settings.from_env(**overrides)` reads the variables below (overrides win);
every limit has a safe default. `Settings` is a plain frozen dataclass, so it pickles to
Ray replicas unchanged.

| variable | field | default |
|---|---|---|
| COMPOSER_HOME | home | ~/.composer (registry database + artifact store) |
| COMPOSER_API_KEY | api_key | none: mutating endpoints open, loopback bind only |
| COMPOSER_BASE | base | the only registered base model |
| COMPOSER_DEFAULT_ROUTER | default_router | retrieval |
| COMPOSER_ALLOWED_ROOTS | allowed_roots | none: server-side path registration disabled |
| COMPOSER_MAX_UPLOAD_MB | max_upload_mb | 1024 (archive size, and its unpacked size) |
| COMPOSER_MAX_TOKENS | max_tokens | 512 (per request) |
| COMPOSER_MAX_MODELS | max_models | 2 whole-model experts resident per replica |
| COMPOSER_THREADS | threads | torch threads per model replica (default: all cores) |
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"${name} must be an integer, got {raw!r}") from None


@dataclass(frozen=True)
class Settings:
    home: str | None = None
    api_key: str | None = field(default=None, repr=False)
    base: str | None = None
    default_router: str | None = None
    allowed_roots: tuple[str, ...] = ()
    max_upload_mb: int = 1024
    max_tokens: int = 512
    max_models: int = 2
    threads: int = 0  # 0: leave torch's default

    @classmethod
    def from_env(cls, **overrides) -> Settings:
        roots = tuple(p for p in os.environ.get("COMPOSER_ALLOWED_ROOTS", "").split(os.pathsep) if p)
        s = cls(home=os.environ.get("COMPOSER_HOME") or None, api_key=os.environ.get("COMPOSER_API_KEY") or None,
                base=os.environ.get("COMPOSER_BASE") or None,
                default_router=os.environ.get("COMPOSER_DEFAULT_ROUTER") or None, allowed_roots=roots,
                max_upload_mb=_env_int("COMPOSER_MAX_UPLOAD_MB", 1024), max_tokens=_env_int("COMPOSER_MAX_TOKENS", 512),
                max_models=_env_int("COMPOSER_MAX_MODELS", 2), threads=_env_int("COMPOSER_THREADS", 0))
        return replace(s, **{k: v for k, v in overrides.items() if v is not None})

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024
