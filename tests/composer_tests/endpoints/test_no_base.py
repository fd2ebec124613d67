"""Composer in front of OpenAI-compatible servers alone: no local model at all, two commands.

A fresh registry home, `composer register --kind endpoint` twice (the operator's
allowlist in COMPOSER_ALLOWED_ENDPOINTS), then `composer serve --in-process` (a real
process on loopback) routes each prompt to the right endpoint and answers as that
endpoint does. With no base model, a plan that needs one (a router that abstained) is a
clear 400, not a crash.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from helpers.api import chat, wait_until
from helpers.server import copy_home
from helpers.upstream import Upstream, prompts

from composer.cli import main
from composer.serving.ports import free_port


@pytest.fixture(scope="module")
def upstream(demo_ocean, tmp_path_factory):
    root = tmp_path_factory.mktemp("no-base")
    (root / "allowed").mkdir()
    with Upstream(copy_home(demo_ocean, root / "up"), root / "allowed", free_port()) as up:
        yield up


def test_register_and_serve_endpoints_with_no_local_model(
    upstream, demo_ocean, tmp_path, monkeypatch, capsys
):
    home = tmp_path / "home"
    monkeypatch.setenv("COMPOSER_ALLOWED_ENDPOINTS", upstream.url.removesuffix("/v1"))
    for task in ("reverse", "add"):
        examples = tmp_path / f"{task}.txt"
        examples.write_text("\n".join(prompts(demo_ocean, task, 30)[10:]))
        argv = ["--home", str(home), "register", "--kind", "endpoint", "--name", f"remote-{task}"]
        argv += ["--url", upstream.url, "--model", task, "--examples", str(examples)]
        assert main(argv) == 0, capsys.readouterr()
    assert "registered" in capsys.readouterr().out

    port = free_port()
    env = {**os.environ, "COMPOSER_HOME": str(home), "COMPOSER_THREADS": "1"}
    cmd = [str(Path(sys.executable).parent / "composer"), "serve", "--in-process", "--port", str(port)]
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)

        def ready():
            assert server.poll() is None, server.stderr.read().decode()[-2000:]
            try:
                return http.get("/readyz").status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, "composer serve answers /readyz", timeout_s=60, interval_s=0.2)
        for task in ("reverse", "add"):
            for p in prompts(demo_ocean, task, 3):
                body = chat(http, "composer", p, max_tokens=12).json()
                assert body["routing"]["served_by"] == f"remote-{task}", body
                direct = httpx.post(
                    upstream.url + "/chat/completions",
                    json={"model": task, "messages": [{"role": "user", "content": p}], "max_tokens": 12},
                    timeout=60,
                ).json()
                assert body["choices"][0]["message"]["content"] == direct["choices"][0]["message"]["content"]
        models = {m["id"] for m in http.get("/v1/models").json()["data"]}
        assert {"remote-reverse", "remote-add"} <= models
        r = chat(http, "composer", "hello", routing={"threshold": 0.99})  # abstains: to the base model
        assert r.status_code == 400 and "none is registered" in r.json()["error"]["message"], r.text
    finally:
        server.terminate()
        server.wait(30)
