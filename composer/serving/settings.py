"""Service settings: limits, auth and where the registry lives, from the environment.

Contract: `Settings.from_env(**overrides)` reads the variables below (overrides win);
every limit has a safe default and must be positive. `Settings` is a plain frozen
dataclass, so it pickles to Ray replicas unchanged.

| variable | field | default |
|---|---|---|
| COMPOSER_HOME | home | ~/.composer (registry database + artifact store) |
| COMPOSER_API_KEY | api_key | none: mutating endpoints open, loopback bind only |
| COMPOSER_BASE | base | the only registered base model |
| COMPOSER_DEFAULT_ROUTER | default_router | retrieval |
| COMPOSER_ALLOWED_ROOTS | allowed_roots | none: server-side path registration disabled |
| COMPOSER_MAX_UPLOAD_MB | max_upload_mb | 1024 (archive size, and its unpacked size) |
| COMPOSER_MAX_TOKENS | max_tokens | 512 new tokens per request |
| COMPOSER_MAX_PROMPT_CHARS | max_prompt_chars | 32768 characters of prompt per request (the model's context is checked too) |
| COMPOSER_MAX_PROMPTS | max_prompts | 64 prompts per /v1/completions or /v1/route request |
| COMPOSER_MAX_EXPERTS | max_experts | 16 experts one request may combine (top_k, experts lists, merges) |
| COMPOSER_MAX_QUEUE | max_queue | 64 requests in flight per ingress; beyond: 429 |
| COMPOSER_REQUEST_TIMEOUT_S | request_timeout_s | 300: a request still unanswered is ended with 503 |
| COMPOSER_MAX_EVAL_EXAMPLES | max_eval_examples | 10000 examples per evaluation job |
| COMPOSER_MAX_MODELS | max_models | 2 whole-model experts resident per replica |
| COMPOSER_THREADS | threads | torch threads per model replica (default: all cores) |
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace

ENV = {"max_upload_mb": "COMPOSER_MAX_UPLOAD_MB", "max_tokens": "COMPOSER_MAX_TOKENS",
       "max_prompt_chars": "COMPOSER_MAX_PROMPT_CHARS", "max_prompts": "COMPOSER_MAX_PROMPTS",
       "max_experts": "COMPOSER_MAX_EXPERTS", "max_queue": "COMPOSER_MAX_QUEUE",
       "request_timeout_s": "COMPOSER_REQUEST_TIMEOUT_S", "max_eval_examples": "COMPOSER_MAX_EVAL_EXAMPLES",
       "max_models": "COMPOSER_MAX_MODELS", "threads": "COMPOSER_THREADS"}


def _env_number(name: str, kind: type):
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return None
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"${name} must be {'an integer' if kind is int else 'a number'}, got {raw!r}") from None


@dataclass(frozen=True)
class Settings:
    home: str | None = None
    api_key: str | None = field(default=None, repr=False)
    base: str | None = None
    default_router: str | None = None
    allowed_roots: tuple[str, ...] = ()
    max_upload_mb: int = 1024
    max_tokens: int = 512
    max_prompt_chars: int = 32768
    max_prompts: int = 64
    max_experts: int = 16
    max_queue: int = 64
    request_timeout_s: float = 300.0
    max_eval_examples: int = 10000
    max_models: int = 2
    threads: int = 0  # 0: leave torch's default

    def __post_init__(self):
        for f in fields(self):
            if f.name in ENV and f.name != "threads" and not getattr(self, f.name) > 0:
                raise ValueError(f"{f.name} (${ENV[f.name]}) must be positive, got {getattr(self, f.name)!r}")

    @classmethod
    def from_env(cls, **overrides) -> Settings:
        roots = tuple(p for p in os.environ.get("COMPOSER_ALLOWED_ROOTS", "").split(os.pathsep) if p)
        kinds = {f.name: type(f.default) for f in fields(cls)}  # int, or float for the timeout
        limits = {k: _env_number(v, kinds[k]) for k, v in ENV.items()}
        env = {"home": os.environ.get("COMPOSER_HOME") or None, "api_key": os.environ.get("COMPOSER_API_KEY") or None,
               "base": os.environ.get("COMPOSER_BASE") or None,
               "default_router": os.environ.get("COMPOSER_DEFAULT_ROUTER") or None,
               "allowed_roots": roots or None, **limits}
        return replace(cls(), **{k: v for k, v in {**env, **overrides}.items() if v is not None})

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024
