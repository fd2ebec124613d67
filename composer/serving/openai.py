"""OpenAI-compatible response shapes: completions, chat completions and their SSE chunks.

Contract: `routing_view(completion)` is the `routing` field Composer adds to responses (the
plan, `served_by` and ensemble `candidates`). `chat_response` / `text_response` build the
non-streaming bodies; `sse_chat` / `sse_text` turn a backend stream (text deltas, then
the `Completion`) into server-sent events in OpenAI's chunk format, ending with
`data: [DONE]`; an error after the stream started is sent as one `{"error": ...}` event.
`cut(text, stops)` and `StopScanner` apply `stop` sequences (OpenAI: the stop string is
not returned).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator

from composer.serving.errors import error_status


def routing_view(c) -> dict:
    return {**c.plan.model_dump(exclude_none=True), "served_by": c.expert, "candidates": c.candidates}


def usage(completions) -> dict:
    """OpenAI's usage, plus `cost` (as OpenRouter reports it) when the experts have prices."""
    p = sum(c.prompt_tokens for c in completions)
    n = sum(c.completion_tokens for c in completions)
    out = {"prompt_tokens": p, "completion_tokens": n, "total_tokens": p + n}
    costs = [c.cost for c in completions if c.cost is not None]
    if costs:
        out["cost"] = sum(costs)
    return out


def cut(text: str, stops: list[str]) -> tuple[str, bool]:
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return (text[: min(hits)], True) if hits else (text, False)


class StopScanner:
    """Streams text through, holding back just enough to never emit part of a stop string."""

    def __init__(self, stops: list[str]):
        self.stops, self.buf = stops, ""
        self.hold = max((len(s) for s in stops), default=1) - 1

    def feed(self, delta: str) -> tuple[str, bool]:
        self.buf += delta
        text, hit = cut(self.buf, self.stops)
        if hit:
            self.buf = ""
            return text, True
        emit = self.buf[: len(self.buf) - self.hold] if self.hold else self.buf
        self.buf = self.buf[len(emit) :]
        return emit, False

    def flush(self) -> str:
        out, self.buf = self.buf, ""
        return out


def _ids(prefix: str) -> tuple[str, int]:
    return f"{prefix}-{uuid.uuid4().hex[:24]}", int(time.time())


def chat_response(model: str, c, stops: list[str]) -> dict:
    text, hit = cut(c.text, stops)
    rid, created = _ids("chatcmpl")
    return {
        "id": rid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": "stop" if hit else c.finish_reason,
            }
        ],
        "usage": usage([c]),
        "routing": routing_view(c),
    }


def text_response(model: str, completions, stops: list[str]) -> dict:
    rid, created = _ids("cmpl")
    choices = []
    for i, c in enumerate(completions):
        text, hit = cut(c.text, stops)
        choices.append(
            {
                "index": i,
                "text": text,
                "logprobs": None,
                "finish_reason": "stop" if hit else c.finish_reason,
                "routing": routing_view(c),
            }
        )
    return {
        "id": rid,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": choices,
        "usage": usage(completions),
        "routing": choices[0]["routing"],
    }


def _event(obj) -> str:
    return f"data: {json.dumps(obj)}\n\n"


async def _sse(
    stream: AsyncIterator, stops: list[str], chunk, first: dict | None, include_usage: bool, routing: dict
) -> AsyncIterator[str]:
    """Shared SSE loop; `chunk(delta_text | None, finish_reason | None, **extra)` makes one event body."""
    scanner, final, finish = StopScanner(stops), None, None
    if first is not None:
        yield _event(first)
    try:
        async for item in stream:
            if not isinstance(item, str):
                final = item
                continue
            text, hit = scanner.feed(item)
            if text:
                yield _event(chunk(text, None))
            if hit:
                finish = "stop"
                break
        if finish is None:
            if tail := scanner.flush():
                yield _event(chunk(tail, None))
            finish = final.finish_reason if final is not None else "stop"
    except Exception as e:  # noqa: BLE001 - headers are sent: report in-band, as OpenAI does
        status, type_, message = error_status(e)
        yield _event({"error": {"type": type_, "message": message, "status": status}})
        yield "data: [DONE]\n\n"
        return
    finally:
        if hasattr(stream, "aclose"):
            await stream.aclose()
    last = chunk(None, finish)
    if final is not None:
        last["routing"] = {**routing, "served_by": final.expert, "candidates": final.candidates}
    yield _event(last)
    if include_usage and final is not None:
        yield _event({**chunk(None, None), "choices": [], "usage": usage([final])})
    yield "data: [DONE]\n\n"


def sse_chat(
    model: str, stream: AsyncIterator, plan, stops: list[str], include_usage: bool
) -> AsyncIterator[str]:
    rid, created = _ids("chatcmpl")
    routing = plan.model_dump(exclude_none=True)

    def chunk(text, finish):
        delta = {} if text is None else {"content": text}
        return {
            "id": rid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    first = chunk(None, None)
    first["choices"][0]["delta"] = {"role": "assistant", "content": ""}
    first["routing"] = routing
    return _sse(stream, stops, chunk, first, include_usage, routing)


def sse_text(
    model: str, stream: AsyncIterator, plan, stops: list[str], include_usage: bool
) -> AsyncIterator[str]:
    rid, created = _ids("cmpl")
    routing = plan.model_dump(exclude_none=True)

    def chunk(text, finish):
        return {
            "id": rid,
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}],
        }

    return _sse(stream, stops, chunk, None, include_usage, routing)
