"""Endpoint experts (`kind=endpoint`): a model served by an OpenAI-compatible server elsewhere.

Contract: an endpoint expert's stored files are one `endpoint.json` ({url, model,
api_key_env, timeout_s}), so it is registered, versioned, hashed and removed like any
expert. `norm_endpoint(spec)` checks the *shape* of a spec and returns it normalised:
- `url`: the OpenAI base URL as clients take it (`http://host:8000/v1`), http or https,
  with a host, no user:password, query or fragment; a trailing "/" is dropped;
- `model`: the remote model name (for a vLLM/SGLang LoRA: the adapter's served name);
- `api_key_env`: the NAME of an environment variable holding the key (`[A-Za-z_][A-Za-z0-9_]*`)
  or None; the key itself is never stored or echoed;
- `timeout_s`: seconds a call may take, 0 < t <= 600 (default 30).
`ValidationError` names the bad field. Whether the server may call that URL (operator
allowlist, address checks) and whether it answers is decided by the caller
(`composer.endpoints`), which reads the environment; the registry reads none.
`write_endpoint_dir(dir, spec)` writes the file; `read_endpoint(dir)` reads and checks it.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from urllib.parse import urlsplit

from .errors import ValidationError

ENDPOINT_FILE = "endpoint.json"
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
FIELDS = ("url", "model", "api_key_env", "timeout_s")
DEFAULT_TIMEOUT_S = 30.0


def norm_url(url) -> str:
    if not isinstance(url, str) or not url.strip():
        raise ValidationError("endpoint url must be a non-empty string such as http://127.0.0.1:8000/v1")
    url = url.strip()
    try:
        parts = urlsplit(url)
        port = parts.port  # a bad port raises here
    except ValueError as e:
        raise ValidationError(f"endpoint url {url!r:.120} is not a valid URL ({e})") from None
    if parts.scheme not in ("http", "https"):
        raise ValidationError(f"endpoint url must be http:// or https://, got {url!r:.120}")
    if not parts.hostname:
        raise ValidationError(f"endpoint url {url!r:.120} has no host")
    if parts.username is not None or parts.password is not None:
        raise ValidationError("endpoint url must not carry a user or password: name an api_key_env instead")
    if parts.query or parts.fragment:
        raise ValidationError(f"endpoint url {url!r:.120} must not have a query or fragment")
    del port
    return url.rstrip("/")


def norm_endpoint(spec) -> dict:
    if not isinstance(spec, dict):
        raise ValidationError(f"an endpoint spec is a dict with {', '.join(FIELDS)}")
    unknown = set(spec) - set(FIELDS)
    if unknown:
        raise ValidationError(
            f"unknown endpoint field(s) {', '.join(sorted(unknown))}; known: {', '.join(FIELDS)}"
        )
    model = spec.get("model")
    if not isinstance(model, str) or not model.strip() or len(model) > 256:
        raise ValidationError("endpoint model must be the remote model's name (1-256 characters)")
    env = spec.get("api_key_env")
    if env is not None and (not isinstance(env, str) or not ENV_NAME.match(env)):
        raise ValidationError(
            "api_key_env must be the NAME of an environment variable (letters, digits, _), not the key"
        )
    timeout = spec.get("timeout_s", DEFAULT_TIMEOUT_S)
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not math.isfinite(timeout)
        or not 0 < timeout <= 600
    ):
        raise ValidationError(f"timeout_s must be a number of seconds in (0, 600], got {timeout!r}")
    return {
        "url": norm_url(spec.get("url")),
        "model": model.strip(),
        "api_key_env": env,
        "timeout_s": float(timeout),
    }


def write_endpoint_dir(path: str | Path, spec: dict) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / ENDPOINT_FILE).write_text(json.dumps(norm_endpoint(spec), indent=2, sort_keys=True))
    return path


def read_endpoint(path: str | Path) -> dict:
    f = Path(path) / ENDPOINT_FILE
    if not f.is_file():
        raise ValidationError(f"{path} has no {ENDPOINT_FILE}: an endpoint expert is registered from a spec")
    extra = [p.name for p in Path(path).iterdir() if p.name != ENDPOINT_FILE]
    if extra:
        raise ValidationError(
            f"an endpoint expert holds only {ENDPOINT_FILE}; found {', '.join(sorted(extra))}"
        )
    try:
        spec = json.loads(f.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ValidationError(f"{ENDPOINT_FILE} is not valid JSON: {e}") from None
    return norm_endpoint(spec)
