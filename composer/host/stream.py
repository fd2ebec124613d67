"""Streaming generation: one prompt's completion as text deltas, while it is decoded.

Contract: `stream(host, prompt, row, **generate_kw)` yields `str` deltas, then one final
`Generation` (the same object `Host.generate` returns). The concatenated deltas equal the
final `Generation.text` exactly: leading whitespace is dropped and trailing whitespace is
held back until more text follows, as `generate` strips both. Decoding runs in a worker
thread; an exception there is re-raised in the caller. Closing the iterator early lets the
worker finish its generation in the background (the host lock serialises it).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

from composer.host.host import Generation, Host, Prompt, Row

_DONE = object()


def stream(host: Host, prompt: Prompt, row: Row, **generate_kw) -> Iterator[str | Generation]:
    q: queue.Queue = queue.Queue()

    def work() -> None:
        try:
            q.put(host.generate([prompt], [row], on_step=lambda ids: q.put(ids[0]), **generate_kw)[0])
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, which re-raises it
            q.put(e)
        q.put(_DONE)

    threading.Thread(target=work, daemon=True, name="composer-stream").start()
    tok, eos = host.tokenizer, host.tokenizer.eos_token_id
    ids: list[int] = []
    sent = ""
    while (item := q.get()) is not _DONE:
        if isinstance(item, BaseException):
            raise item
        if isinstance(item, Generation):
            if item.text != sent:  # the finished text is authoritative
                yield item.text.removeprefix(sent)
            yield item
            continue
        ids.append(item)
        if eos in ids:  # finished: later steps only pad
            continue
        text = tok.decode(ids, skip_special_tokens=True).strip()
        if text.startswith(sent) and len(text) > len(sent) and not text.endswith("\ufffd"):
            yield text[len(sent) :]
            sent = text
