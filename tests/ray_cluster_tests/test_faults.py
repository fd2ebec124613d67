"""Faults of the served API, against a real Ray Serve server on loopback.

One server for the module (a private copy of the fast demo ocean, the hardening limits of
`SMALL_LIMITS`: 16 requests in flight, a 30 s deadline, 64 new tokens).
- The host replica's process is killed during traffic: requests end 200 or 503 within their
  deadline, and once Serve has restarted the replica (a new process answers) requests are
  served again. Each step waits on what it needs to observe (answers, the new process),
  never on a fixed delay.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import httpx
import pytest
from helpers.api import REVERSE, chat, wait_until
from helpers.server import SMALL_LIMITS, ray_server

pytestmark = pytest.mark.slow
TIMEOUT_S = SMALL_LIMITS["request_timeout_s"]


@pytest.fixture(scope="module")
def server(demo_ocean, tmp_path_factory):
    with ray_server(demo_ocean, tmp_path_factory.mktemp("faults"), **SMALL_LIMITS) as s:
        yield s


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server["url"], timeout=120) as c:
        yield c


def replica_pid(host, other_than: int) -> int | None:
    """The host replica's pid once a process other than `other_than` answers; None meanwhile."""
    try:
        pid = host.stats.remote().result(timeout_s=5)["pid"]
    except Exception:  # noqa: BLE001 - the replica is dead or restarting: not yet
        return None
    return pid if pid != other_than else None


def test_killed_host_replica_fails_fast_then_serves_again(server, http, capsys):
    from ray import serve

    host = serve.get_deployment_handle("Host:demo-base", app_name="composer")
    pid = host.stats.remote().result(timeout_s=30)["pid"]
    outcomes: list[tuple[float, int, float]] = []  # (start, status, seconds)
    stop = threading.Event()

    def traffic():
        with httpx.Client(base_url=server["url"], timeout=TIMEOUT_S + 30) as c:
            while not stop.is_set():
                t0 = time.monotonic()
                try:
                    status = chat(c, "composer", REVERSE, max_tokens=8).status_code
                except httpx.HTTPError:
                    status = -1
                outcomes.append((t0, status, time.monotonic() - t0))
                if status != 200:
                    time.sleep(0.5)  # a client backing off

    threads = [threading.Thread(target=traffic) for _ in range(6)]
    for t in threads:
        t.start()
    try:
        # kill while traffic is being served: once every client could have had an answer
        wait_until(
            lambda: sum(s == 200 for _, s, _ in outcomes) >= len(threads), "the traffic is served", 120
        )
        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        new_pid = wait_until(lambda: replica_pid(host, pid), "Serve restarted the host replica", 180, 0.5)
        restarted_at = time.monotonic()
        wait_until(
            lambda: any(s == 200 and t0 > restarted_at for t0, s, _ in outcomes),
            "requests started after the restart are served",
            180,
        )
        served = len(outcomes)
        wait_until(
            lambda: len(outcomes) >= served + len(threads), "the traffic goes on after the restart", 120
        )
    finally:
        stop.set()
        for t in threads:
            t.join(TIMEOUT_S + 40)
    after = [(s, d) for t0, s, d in outcomes if t0 >= killed_at - TIMEOUT_S]
    with capsys.disabled():
        print(
            f"\nreplica kill: {len(outcomes)} requests, statuses after the kill "
            f"{sorted({s: [x for x, _ in after].count(s) for s, _ in after}.items())}, "
            f"slowest {max(d for _, d in after):.1f}s, restarted after {restarted_at - killed_at:.1f}s"
        )
    assert not any(t.is_alive() for t in threads)
    assert {s for s, _ in after} <= {200, 503}, (
        after
    )  # served, or failed fast with 503: never a hang or a 500
    assert max(d for _, d in after) < TIMEOUT_S + 15
    assert new_pid != pid  # a new replica process
    assert http.get("/readyz").status_code == 200
    assert chat(http, "reverse", REVERSE, max_tokens=16).status_code == 200
