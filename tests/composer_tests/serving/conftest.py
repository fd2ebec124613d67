"""Fixtures of the bad-input modules (test_bad_archives.py, test_bad_requests.py).

One app per module, in this process, over the in-process backend (`LocalBackend`) behind
FastAPI's TestClient — the same HTTP layer, request policy, registration and models as on
Ray, without starting Ray — on a private copy of the fast demo ocean with small limits so
that they are reachable (`SMALL_LIMITS`: 2 MiB uploads, 64 new tokens, 4 experts, 4000
prompt characters, 16 requests in flight, 30 s). `server` is the app, `http` its client,
`before` what must not change (`helpers.api.snapshot`: registry rows of every status, every file of the
store, the uploads dir, a normal request's answers).
"""

from __future__ import annotations

import pytest
from helpers.api import snapshot
from helpers.local import local_server
from helpers.server import SMALL_LIMITS


@pytest.fixture(scope="module")
def server(demo_ocean, tmp_path_factory):
    with local_server(demo_ocean, tmp_path_factory.mktemp("bad-input"), **SMALL_LIMITS) as s:
        yield s


@pytest.fixture(scope="module")
def http(server):
    return server["client"]


@pytest.fixture(scope="module")
def before(server, http):
    """What must not change: registry rows (all statuses), every file of the store, uploads, answers."""
    return snapshot(server["home"], http)
