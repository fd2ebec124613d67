"""Error shapes, auth and refused registrations of the REST API: each a 4xx JSON error and
nothing stored, and the server healthy afterwards (fixtures in conftest.py: the app in this
process behind TestClient, with an API key and one allowed root; the same app Ray serves).
"""

from __future__ import annotations

import io
import json
import zipfile

from helpers.api import REVERSE, chat
from helpers.server import KEY, assert_error

from composer.serving.archive import pack


def test_errors_are_4xx_json_and_the_server_stays_healthy(server, http):
    msg = [{"role": "user", "content": REVERSE}]
    assert assert_error(chat(http, "no-such-model", REVERSE), 404)["type"] == "model_not_found"
    assert_error(chat(http, "composer:no-such-router", REVERSE), 404)
    assert_error(chat(http, "composer", REVERSE, routing={"router": "no-such-router"}), 400)
    assert_error(chat(http, "composer", REVERSE, routing={"router": "phatgoose", "top_k": 0}), 400)
    assert_error(chat(http, "composer", REVERSE, routing={"router": "glider", "alpha": "lots"}), 400)
    assert_error(chat(http, "composer", REVERSE, routing={"router": "uniform", "experts": ["ghost"]}), 400)
    assert_error(chat(http, "reverse", REVERSE, routing={"router": "coe"}), 400)  # routing an expert
    assert_error(chat(http, "composer", REVERSE, max_tokens=10_000), 400)  # beyond the server's limit
    assert_error(chat(http, "composer", REVERSE, max_tokens=-1), 400)
    assert_error(chat(http, "composer", REVERSE, n=2), 400)
    assert_error(chat(http, "composer", REVERSE, frequency_penalty=1.0), 400)  # unknown field
    assert_error(http.post("/v1/chat/completions", json={"model": "composer", "messages": []}), 400)
    assert_error(http.post("/v1/chat/completions", json={"model": "composer", "messages": "hi"}), 400)
    assert_error(http.post("/v1/chat/completions", json={"model": 7, "messages": msg}), 400)
    assert_error(
        http.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}),
        400,
    )
    assert_error(
        http.post("/v1/completions", json={"model": "composer", "prompt": ["a", "b"], "stream": True}), 400
    )
    assert_error(http.post("/v1/route", json={"prompt": "x", "messages": msg}), 400)
    assert_error(http.get("/v1/experts/no-such-expert"), 404)
    assert_error(http.get("/v1/nowhere"), 404)
    assert http.get("/healthz").json() == {"status": "ok"} and http.get("/readyz").status_code == 200
    assert chat(http, "composer", REVERSE).status_code == 200


def test_mutating_endpoints_need_the_key_reads_do_not(server, http):
    before = http.get("/v1/experts").json()
    adapter = server["ocean"].out / "experts" / "length"
    files = {"archive": ("a.zip", pack(adapter), "application/zip")}
    meta = {"metadata": json.dumps({"name": "sneaky", "examples": ["x"]})}
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": KEY},
        {"Authorization": "Basic " + KEY},
    ):
        assert_error(http.post("/v1/experts", files=files, data=meta, headers=headers), 401)
        assert_error(
            http.post("/v1/experts", json={"name": "sneaky", "path": str(adapter)}, headers=headers), 401
        )
        assert_error(http.delete("/v1/experts/reverse", headers=headers), 401)
        assert_error(
            http.post("/v1/evaluations", json={"benchmark": "demo", "routers": "base"}, headers=headers), 401
        )
    assert http.get("/v1/experts").json() == before and http.get("/v1/evaluations").json()["data"] == []
    assert http.get("/v1/models").status_code == 200 and http.get("/metrics").status_code == 200


def test_registration_errors_store_nothing(server, http):
    auth = {"Authorization": f"Bearer {KEY}"}
    before = http.get("/v1/experts").json()
    files_before = sorted((server["home"] / "store").rglob("*"))
    adapter = server["ocean"].out / "experts" / "length"
    outside = http.post("/v1/experts", json={"name": "outside", "path": str(adapter)}, headers=auth)
    assert assert_error(outside, 403)["type"] == "forbidden"
    slip = io.BytesIO()
    with zipfile.ZipFile(slip, "w") as z:
        z.writestr("../evil/adapter_config.json", "{}")
    bad = http.post(
        "/v1/experts",
        files={"archive": ("a.zip", slip.getvalue())},
        data={"metadata": json.dumps({"name": "evil"})},
        headers=auth,
    )
    assert "escapes" in assert_error(bad, 400)["message"]
    broken = io.BytesIO()
    with zipfile.ZipFile(broken, "w") as z:
        z.writestr("adapter/adapter_config.json", "{not json")
    assert_error(
        http.post(
            "/v1/experts",
            files={"archive": ("a.zip", broken.getvalue())},
            data={"metadata": json.dumps({"name": "broken"})},
            headers=auth,
        ),
        400,
    )
    dup = http.post(
        "/v1/experts",
        files={"archive": ("a.zip", pack(adapter))},
        data={"metadata": json.dumps({"name": "reverse"})},
        headers=auth,
    )
    assert_error(dup, 409)
    assert_error(http.post("/v1/experts", content=b"x", headers={**auth, "content-type": "text/plain"}), 415)
    assert http.get("/v1/experts").json() == before
    assert sorted((server["home"] / "store").rglob("*")) == files_before
