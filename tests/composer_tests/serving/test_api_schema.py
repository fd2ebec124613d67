"""The API against its own OpenAPI schema (schemathesis), and the security invariants of the code.

- Schemathesis generates requests from /openapi.json for every operation, valid ones and
  (where an operation takes input) invalid ones, bounded to `EXAMPLES` each, and sends them
  to the real app (in-process backend on a copy of the fast demo ocean, API key sent, so
  registration and deletion are exercised too). Checks: no 5xx, status codes, content types,
  headers and bodies as documented, and schema-invalid input rejected with a 4xx.
  Afterwards the service still answers a normal request as before.
  The gate is reproducible: the same derandomized examples every run. To explore, set
  COMPOSER_FUZZ_EXAMPLES=N for N fresh random examples per operation and mode.
- The source never unpickles (`torch.load`, `pickle.load(s)`, `np.load(allow_pickle=True)`)
  and never sets `trust_remote_code=True`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from helpers.server import copy_home

EXPLORE = os.environ.get("COMPOSER_FUZZ_EXAMPLES")  # set: that many fresh random examples, not the CI gate's
EXAMPLES = int(EXPLORE) if EXPLORE else 25
ROOT = Path(__file__).resolve().parents[3]


def test_every_operation_conforms_to_the_openapi_schema(demo_ocean, tmp_path):
    import schemathesis
    from fastapi.testclient import TestClient
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        negative_data_rejection,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    from composer.serving import LocalBackend, create_app
    from composer.settings import Settings

    home = copy_home(demo_ocean, tmp_path / "home")
    cfg = Settings(home=str(home), api_key="schema-key", max_tokens=8, threads=2)
    app = create_app(LocalBackend(cfg), cfg)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        negative_data_rejection,
    ]
    failures, ran = [], []
    for result in schema.get_all_operations():
        op = result.ok()
        takes_input = bool(op.body or op.path_parameters or op.query)
        for mode in [GenerationMode.POSITIVE] + [GenerationMode.NEGATIVE] * takes_input:

            @given(case=op.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES,
                derandomize=not EXPLORE,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def fuzz(case):
                case.call_and_validate(checks=checks, headers={"Authorization": "Bearer schema-key"})

            try:
                fuzz()
                ran.append(f"{op.label} {mode.value}")
            except Exception as e:  # noqa: BLE001 - collected, so every operation is tried and reported
                failures.append(f"{op.label} ({mode.value}): {str(e)[:2000]}")
    assert not failures, "\n\n".join(failures)
    assert len(ran) >= 20  # every endpoint was exercised
    with TestClient(app) as client:
        r = client.post(
            "/v1/chat/completions",
            json={
                "model": "reverse",
                "max_tokens": 8,
                "messages": [{"role": "user", "content": "Write these letters backwards: c a t"}],
            },
        )
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
        assert {"reverse", "countdown", "demo-base"} <= {
            m["id"] for m in client.get("/v1/models").json()["data"]
        }


UNSAFE = {
    "unpickling": re.compile(
        r"torch\.load\(|pickle\.loads?\(|allow_pickle\s*=\s*True|weights_only\s*=\s*False"
    ),
    "remote code": re.compile(r"trust_remote_code\s*=\s*True"),
}


@pytest.mark.parametrize("what", list(UNSAFE))
def test_the_code_never_unpickles_nor_runs_remote_code(what):
    sources = [
        p
        for d in ("composer", "routers", "registry", "ray_cluster", "bench")
        for p in (ROOT / d).rglob("*.py")
    ]
    assert len(sources) > 50
    hits = [
        f"{p.relative_to(ROOT)}:{i}"
        for p in sources
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if UNSAFE[what].search(line)
    ]
    assert not hits, f"{what} in {hits}"
