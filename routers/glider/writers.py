"""GLIDER's instruction writers: from example prompts, one sentence saying what the task is.

Contract: a writer has a `name` and `write(prompts) -> str`.
- `EndpointWriter(url, model)`: any OpenAI-compatible server (`POST {url}/chat/completions`,
  Bearer `api_key` if given); `url` is the API base, e.g. http://127.0.0.1:8000/v1.
- `ModelWriter(host)`: a local causal LM (`composer.host.Host`, e.g. a registered model).
- `writer_from_spec(spec, registry, api_key=None, load=None)`: "" or "none" -> None;
  "http(s)://BASE[#MODEL]" -> an EndpointWriter; anything else names a registered base or
  whole-model expert -> a ModelWriter over `load(path, name)` (the caller's model loader:
  routers never load models themselves).
  `api_key` is an endpoint's Bearer key. The CLI and the service take both from `Settings`
  (COMPOSER_INSTRUCTION_WRITER, COMPOSER_INSTRUCTION_WRITER_KEY).
`PROMPT` asks for the instruction as in the GLIDER paper (the task, not the answers).
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Sequence

from routers.base import RouterError

PROMPT = (
    "Here are some inputs of one task:\n{examples}\n"
    "Write one sentence, an instruction that says what the task asks for. Instruction:"
)


def render(prompts: Sequence[str]) -> str:
    return PROMPT.format(examples="\n".join(f"- {p}" for p in prompts))


class EndpointWriter:
    def __init__(self, url: str, model: str = "default", api_key: str | None = None, timeout: float = 60):
        self.url, self.model, self.api_key, self.timeout = url.rstrip("/"), model, api_key, timeout
        self.name = f"{self.url}#{model}"

    def write(self, prompts: Sequence[str]) -> str:
        body = json.dumps(
            {
                "model": self.model,
                "messages": [{"role": "user", "content": render(prompts)}],
                "max_tokens": 64,
                "temperature": 0,
            }
        ).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(f"{self.url}/chat/completions", body, headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                text = json.load(r)["choices"][0]["message"]["content"]
        except (OSError, ValueError, KeyError, IndexError) as e:
            raise RouterError(f"instruction writer {self.name} failed: {e}") from None
        return " ".join(str(text).split())


class ModelWriter:
    def __init__(self, host, max_new_tokens: int = 48):
        self.host, self.max_new_tokens, self.name = host, max_new_tokens, f"model:{host.name}"

    def write(self, prompts: Sequence[str]) -> str:
        return self.host.generate([render(prompts)], max_new_tokens=self.max_new_tokens)[0].text


def writer_from_spec(spec: str | None, registry=None, api_key: str | None = None, load=None):
    spec = (spec or "").strip()
    if spec.lower() in ("", "none"):
        return None
    if spec.startswith(("http://", "https://")):
        url, _, model = spec.partition("#")
        return EndpointWriter(url, model or "default", api_key)
    if registry is None or load is None:
        raise RouterError(
            f"instruction writer {spec!r} names a model but no registry and model loader were given"
        )
    rec = registry.get(spec)
    if rec.kind not in ("base", "model"):
        raise RouterError(f"instruction writer {spec!r} is a {rec.kind} expert; give a base or whole model")
    return ModelWriter(load(rec.path, rec.name))
