"""Client-side calls shared by the API tests, for an `httpx.Client` or FastAPI's `TestClient`.

Contract: `chat(http, model, prompt, **body)` posts one user message to
/v1/chat/completions and returns the response; `answer(...)` is its message content (the
call must succeed). `metric(http, name, **labels)` reads one sample from /metrics (an
AssertionError if absent). `wait_until(check, what, timeout_s)` polls `check()` until it
returns a truthy value and returns it, or fails naming `what` after the deadline: tests wait
on observable state, never on a fixed sleep. `idle(http)` waits until the server has no
admitted request in flight. `snapshot(home, http)` is what a refused request must leave
unchanged: registry rows (all statuses, with digests) and counts, every store file with
its size, the uploads dir, and the answers of two normal requests.
"""

from __future__ import annotations

import time
from pathlib import Path

REVERSE = "Write these letters backwards: c a t"
COUNTDOWN = "Count down from 5"


def chat(http, model: str = "composer", prompt: str = REVERSE, **body):
    return http.post(
        "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": prompt}], **body},
    )


def answer(http, model: str = "composer", prompt: str = REVERSE, **body) -> str:
    r = chat(http, model, prompt, **body)
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["message"]["content"]


def metric(http, name: str, **labels) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    prefix = f"{name}{{{want}}} " if labels else f"{name} "
    for line in http.get("/metrics").text.splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {prefix.strip()}")


def wait_until(check, what: str, timeout_s: float = 120, interval_s: float = 0.05):
    deadline = time.monotonic() + timeout_s
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting until {what}")
        time.sleep(interval_s)
    return value


def idle(http, timeout_s: float = 60) -> None:
    """Until every admitted request gave its place back (a stream's place is released as it ends)."""
    wait_until(lambda: metric(http, "composer_requests_in_flight") == 0, "no request is in flight", timeout_s)


def snapshot(home: Path, http) -> tuple:
    from registry import Registry

    reg = Registry(home=home)
    try:
        rows = [(r.name, r.version, r.status, r.digest) for r in reg.list(include_removed=True)]
        counts = reg.counts()
    finally:
        reg.close()
    store = Path(home) / "store"
    files = sorted(
        (p.relative_to(store).as_posix(), p.stat().st_size) for p in store.rglob("*") if p.is_file()
    )
    uploads = sorted(p.name for p in (Path(home) / "uploads").glob("*"))
    answers = [
        answer(http, m, p, max_tokens=16) for m, p in (("composer", REVERSE), ("countdown", COUNTDOWN))
    ]
    return rows, counts, files, uploads, answers
