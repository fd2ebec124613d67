"""One OpenAI-compatible endpoint, spoken to over HTTP (httpx, no redirects, no proxies from env).

Contract: `spec` is an endpoint expert's spec (`registry.endpoint`: url, model, api_key_env,
timeout_s). The key is read from the environment variable the spec names at each call and
sent only as that endpoint's `Authorization: Bearer` header; it never appears in a result,
an error message or a log line (`redact`).
- `list_models(spec)` -> the model ids of GET {url}/models.
- `complete(spec, prompt, settings)` -> `EndpointResult`: chat messages (or a string with
  `chat=True`) go to POST {url}/chat/completions, a string with `chat=False` to
  {url}/completions; `settings` are the executor's (max_new_tokens, temperature, top_p, seed).
- `stream(spec, prompt, settings)` yields text deltas then the `EndpointResult`, from the
  endpoint's server-sent events (`stream: true`, usage asked for).
Any failure — refused connection, a wait past `timeout_s` (connect, and each read), a
redirect (never followed), a non-2xx status, a body that is not the OpenAI shape — is an
`EndpointError` whose `reason` is one short phrase ("down", "timeout", "HTTP 503", ...).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass

import httpx


class EndpointError(RuntimeError):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}{': ' + detail if detail else ''}")
        self.reason = reason


@dataclass
class EndpointResult:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


def api_key(spec: dict) -> str | None:
    name = spec.get("api_key_env")
    return os.environ.get(name) or None if name else None


def redact(text: str, spec: dict) -> str:
    key = api_key(spec)
    return text.replace(key, "[key]") if key else text


def _client(spec: dict) -> httpx.Client:
    headers = {"Accept": "application/json"}
    if key := api_key(spec):
        headers["Authorization"] = f"Bearer {key}"
    return httpx.Client(
        base_url=spec["url"] + "/",
        headers=headers,
        timeout=httpx.Timeout(spec["timeout_s"]),
        follow_redirects=False,
        trust_env=False,
    )


def _checked(r: httpx.Response, spec: dict) -> httpx.Response:
    if r.is_redirect:
        raise EndpointError(
            "redirected", f"HTTP {r.status_code} to another location (redirects are not followed)"
        )
    if r.status_code >= 400:
        r.read()
        body = redact(r.text[:200], spec).replace("\n", " ")
        raise EndpointError(f"HTTP {r.status_code}", body)
    return r


def _call(fn, spec: dict):
    try:
        return fn()
    except httpx.TimeoutException:
        raise EndpointError("timeout", f"no answer within {spec['timeout_s']:g} s") from None
    except httpx.TransportError as e:
        raise EndpointError("down", redact(type(e).__name__, spec)) from None


def list_models(spec: dict) -> list[str]:
    def go():
        with _client(spec) as c:
            r = _checked(c.get("models"), spec)
            try:
                data = r.json()["data"]
                return [m["id"] for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]
            except (ValueError, KeyError, TypeError):
                raise EndpointError(
                    "not OpenAI-compatible", "GET /models did not return {data: [{id}]}"
                ) from None

    return _call(go, spec)


def _body(spec: dict, prompt, settings: dict, stream: bool) -> tuple[str, dict]:
    body = {"model": spec["model"], "max_tokens": int(settings.get("max_new_tokens", 32))}
    for ours, theirs in (("temperature", "temperature"), ("top_p", "top_p"), ("seed", "seed")):
        if settings.get(ours) is not None:
            body[theirs] = settings[ours]
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    if settings.get("chat", True):
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        return "chat/completions", body | {"messages": messages}
    if not isinstance(prompt, str):
        raise EndpointError("bad request", "a text completion takes a string prompt")
    return "completions", body | {"prompt": prompt}


def _text(choice: dict, chat: bool, delta: bool = False) -> str:
    if not chat:
        return choice.get("text") or ""
    msg = choice.get("delta" if delta else "message") or {}
    return msg.get("content") or ""


def complete(spec: dict, prompt, settings: dict) -> EndpointResult:
    path, body = _body(spec, prompt, settings, stream=False)
    chat = path.startswith("chat")

    def go():
        with _client(spec) as c:
            r = _checked(c.post(path, json=body), spec)
            try:
                out = r.json()
                choice = out["choices"][0]
                usage = out.get("usage") or {}
                return EndpointResult(
                    _text(choice, chat),
                    choice.get("finish_reason") or "stop",
                    int(usage.get("prompt_tokens") or 0),
                    int(usage.get("completion_tokens") or 0),
                )
            except (ValueError, KeyError, IndexError, TypeError):
                raise EndpointError("not OpenAI-compatible", f"POST /{path} returned no choices") from None

    return _call(go, spec)


def _events(r: httpx.Response) -> Iterator[dict]:
    for line in r.iter_lines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            event = json.loads(data)
        except ValueError:
            raise EndpointError("not OpenAI-compatible", "a stream event is not JSON") from None
        if "error" in event:
            raise EndpointError("error in stream", str(event["error"].get("message", ""))[:200])
        yield event


def stream(spec: dict, prompt, settings: dict) -> Iterator[str | EndpointResult]:
    path, body = _body(spec, prompt, settings, stream=True)
    chat = path.startswith("chat")
    parts, finish, usage = [], "stop", {}
    try:
        with _client(spec) as c, c.stream("POST", path, json=body) as r:
            _checked(r, spec)
            for event in _events(r):
                usage = event.get("usage") or usage
                for choice in event.get("choices") or ():
                    if delta := _text(choice, chat, delta=True):
                        parts.append(delta)
                        yield delta
                    finish = choice.get("finish_reason") or finish
    except httpx.TimeoutException:
        raise EndpointError("timeout", f"no data within {spec['timeout_s']:g} s") from None
    except httpx.TransportError as e:
        raise EndpointError("down", type(e).__name__) from None
    yield EndpointResult(
        "".join(parts), finish, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    )
