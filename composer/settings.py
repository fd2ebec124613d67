"""Composer's one configuration: every COMPOSER_* variable is read here, and only here.

Contract: `Settings` is a frozen dataclass with a safe default for every field (it pickles
to Ray replicas unchanged). `Settings.from_env(**overrides)` reads the variables below
(overrides that are not None win); a malformed number or a non-positive limit is a
`ValueError` naming the variable. Only entry points call it — the CLI, the Serve app
builder (`ray_cluster.app`), `composer serve --in-process` and `Composer()` built without
settings; everything below them receives a `Settings` (or the values it needs), so a
replica, a test or a library caller sees exactly the configuration it was given.
`settings.registry()` opens the registry the settings name; `settings.home_dir` is its home.

| variable | field | default |
|---|---|---|
| COMPOSER_HOME | home | ~/.composer (registry database, artifact store, caches) |
| COMPOSER_DB_URL | db_url | sqlite:///<home>/registry.db (any SQLAlchemy URL) |
| COMPOSER_STORE | store | <home>/store |
| COMPOSER_API_KEY | api_key | none: mutating endpoints open, loopback bind only |
| COMPOSER_BASE | base | the only registered base model |
| COMPOSER_DEFAULT_ROUTER | default_router | density |
| COMPOSER_INSTRUCTION_WRITER | instruction_writer | none (GLIDER: descriptions and examples stand in) |
| COMPOSER_INSTRUCTION_WRITER_KEY | instruction_writer_key | none (Bearer key of an endpoint writer) |
| COMPOSER_ALLOWED_ROOTS | allowed_roots | none: server-side path registration disabled |
| COMPOSER_ALLOWED_ENDPOINTS | allowed_endpoints | none: endpoint experts disabled; comma-separated URL prefixes the server may call (`composer.endpoints.guard`) |
| COMPOSER_PRICE_PER_BPARAM | price_per_bparam | 0.03: price per 1M tokens per billion active parameters, for local experts without a price (`routers.cost`) |
| COMPOSER_MAX_UPLOAD_MB | max_upload_mb | 1024 (archive size, and its unpacked size) |
| COMPOSER_MAX_TOKENS | max_tokens | 512 new tokens per request |
| COMPOSER_MAX_PROMPT_CHARS | max_prompt_chars | 32768 characters of prompt per request |
| COMPOSER_MAX_PROMPTS | max_prompts | 64 prompts per /v1/completions or /v1/route request |
| COMPOSER_MAX_EXPERTS | max_experts | 16 experts one request may combine |
| COMPOSER_MAX_QUEUE | max_queue | 64 requests in flight per ingress; beyond: 429 |
| COMPOSER_REQUEST_TIMEOUT_S | request_timeout_s | 300: a request still unanswered is ended with 503 |
| COMPOSER_MAX_EVAL_EXAMPLES | max_eval_examples | 10000 examples per evaluation job |
| COMPOSER_MAX_MODELS | max_models | 2 whole-model experts resident per replica |
| COMPOSER_THREADS | threads | torch threads per model replica (0: all cores) |
| COMPOSER_MAX_ADAPTERS | max_adapters | 0: no limit; LoRA experts resident per host replica (LRU beyond) |
| COMPOSER_ADAPTER_MEMORY_MB | adapter_memory_mb | 0: no limit; adapter memory per host replica (LRU beyond) |
| COMPOSER_PINNED_ADAPTERS | pinned_adapters | none; comma-separated experts never evicted |
| COMPOSER_HOST_REPLICAS | host_replicas | 1 host replica per base model on Ray (each holds the base and its resident adapters) |
| COMPOSER_HOST_RESOURCES | host_resources | none; comma-separated `name=amount` custom Ray resources each host replica asks for (place replicas on nodes that offer them) |
| COMPOSER_DEVICE | device | auto: CUDA when available, else cpu (or cpu, cuda, cuda:N) |
| COMPOSER_DTYPE | dtype | auto: bfloat16 on a GPU that has it, else float32 (or bfloat16, float16, float32) |
| COMPOSER_QUIET | quiet | off; 1 hides progress bars |
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

DEFAULT_ROUTER = "density"
DTYPES = ("auto", "bfloat16", "float16", "float32")
PREFIX = "COMPOSER_"
# limits: must be positive (threads may be 0: torch's default)
LIMITS = (
    "max_upload_mb",
    "max_tokens",
    "max_prompt_chars",
    "max_prompts",
    "max_experts",
    "max_queue",
    "request_timeout_s",
    "max_eval_examples",
    "max_models",
)


def env_name(field_name: str) -> str:
    """The variable that sets a field: `max_queue` -> COMPOSER_MAX_QUEUE, `store` -> COMPOSER_STORE."""
    return PREFIX + field_name.upper()


@dataclass(frozen=True)
class Settings:
    home: str | None = None
    db_url: str | None = field(default=None, repr=False)  # may carry a password
    store: str | None = None
    api_key: str | None = field(default=None, repr=False)
    base: str | None = None
    default_router: str = DEFAULT_ROUTER
    instruction_writer: str | None = None
    instruction_writer_key: str | None = field(default=None, repr=False)
    allowed_roots: tuple[str, ...] = ()
    allowed_endpoints: tuple[str, ...] = ()
    price_per_bparam: float = 0.03
    max_upload_mb: int = 1024
    max_tokens: int = 512
    max_prompt_chars: int = 32768
    max_prompts: int = 64
    max_experts: int = 16
    max_queue: int = 64
    request_timeout_s: float = 300.0
    max_eval_examples: int = 10000
    max_models: int = 2
    threads: int = 0
    max_adapters: int = 0
    adapter_memory_mb: int = 0
    pinned_adapters: tuple[str, ...] = ()
    host_replicas: int = 1
    host_resources: tuple[str, ...] = ()
    device: str = "auto"
    dtype: str = "auto"
    quiet: bool = False

    def __post_init__(self):
        for name in LIMITS:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} (${env_name(name)}) must be positive, got {getattr(self, name)!r}")
        if self.device != "auto" and not re.fullmatch(r"cpu|cuda(:\d+)?", self.device):
            raise ValueError(
                f"device ($COMPOSER_DEVICE) must be auto, cpu, cuda or cuda:N, got {self.device!r}"
            )
        if self.dtype not in DTYPES:
            raise ValueError(
                f"dtype ($COMPOSER_DTYPE) must be one of {', '.join(DTYPES)}, got {self.dtype!r}"
            )
        if self.host_replicas < 1:
            raise ValueError(
                f"host_replicas ($COMPOSER_HOST_REPLICAS) must be >= 1, got {self.host_replicas!r}"
            )
        self.resources()  # a malformed COMPOSER_HOST_RESOURCES fails here, not in a replica
        for name in (
            "threads",
            "max_adapters",
            "adapter_memory_mb",
            "price_per_bparam",
        ):  # 0: torch's default / no limit
            if getattr(self, name) < 0:
                raise ValueError(f"{name} (${env_name(name)}) must be >= 0, got {getattr(self, name)!r}")

    @classmethod
    def from_env(cls, **overrides) -> Settings:
        values = {f.name: _read(f.name, type(f.default)) for f in fields(cls)}
        values.update((k, v) for k, v in overrides.items() if v is not None)
        return replace(cls(), **{k: v for k, v in values.items() if v is not None})

    def resources(self) -> dict[str, float]:
        """`host_resources` as Ray's `resources` option: "gpu_node=1,fast=0.5" -> {"gpu_node": 1.0, "fast": 0.5}."""
        out = {}
        for item in self.host_resources:
            name, eq, amount = item.partition("=")
            try:
                out[name.strip()] = float(amount) if eq else 1.0
            except ValueError:
                raise ValueError(
                    f"host_resources ($COMPOSER_HOST_RESOURCES) takes name=amount items, got {item!r}"
                ) from None
            if not name.strip() or out[name.strip()] <= 0:
                raise ValueError(
                    f"host_resources ($COMPOSER_HOST_RESOURCES) takes name=amount items, got {item!r}"
                )
        return out

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024

    @property
    def home_dir(self) -> Path:
        from registry import DEFAULT_HOME

        return Path(self.home or DEFAULT_HOME).expanduser()

    def registry(self):
        """The registry these settings name (opened now: it recovers from any crash)."""
        from registry import Registry

        return Registry(home=self.home_dir, db_url=self.db_url, store_dir=self.store)


def _read(name: str, kind: type):
    """A field's value from its variable, typed like its default; None when unset or empty."""
    var = env_name(name)
    raw = os.environ.get(var)
    if raw is None or raw == "":
        return None
    if kind is tuple:  # path lists as PATH is (os.pathsep), name lists comma-separated
        sep = os.pathsep if name == "allowed_roots" else ","
        return tuple(p.strip() for p in raw.split(sep) if p.strip()) or None
    if kind is bool:
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            raise ValueError(
                f"${var} must be {'an integer' if kind is int else 'a number'}, got {raw!r}"
            ) from None
    return raw
