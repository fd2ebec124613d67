"""Another Composer server on loopback that tests register as endpoint experts (an OpenAI server).

Contract: `Upstream(home, allowed, port)` serves `create_app(LocalBackend)` over the registry home
`home` with uvicorn on 127.0.0.1:`port`, in a thread of this process; `start()` returns
once it accepts connections, `stop()` once it is closed (the port is free again, so a
restart answers on the same URL). `url` is its OpenAI base URL (`.../v1`). Every request
it receives is recorded as (method, path, Authorization header) in `seen`: the tests check
which key reached it. Use as a context manager (`with Upstream(...) as up:`).
`PlainServer(port)` is a web server that is not an OpenAI server: under /html/ it answers
every path with a web page, under /redirect/ with a 302 to `redirect_to`; under /slow/ and
/fail/ it is a broken OpenAI server: GET .../v1/models lists model "slow" / "fail", a
completion takes `SLOW_S` seconds (/slow/) or answers HTTP 500 (/fail/). `prompts(ocean,
task, n)` are held-in benchmark prompts of a demo task; `REMOTE` maps the endpoint experts
the tests register to the upstream models they forward to; `KEY_ENV`/`SECRET` the key.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from helpers.server import server_settings

KEY_ENV, SECRET = "COMPOSER_TEST_UPSTREAM_KEY", "sk-upstream-very-secret-4242"
REMOTE = {"remote-reverse": "reverse", "remote-uppercase": "uppercase"}


def prompts(ocean, task: str, n: int = 6) -> list[str]:
    rows = [json.loads(x) for x in (ocean.out / "benchmark.jsonl").read_text().splitlines()]
    return [r["prompt"] for r in rows if r["task"] == task and r["split"] == "held-in"][:n]


SLOW_S = 30.0  # far beyond the 0.5 s timeout the tests give it: an answer sooner proves no wait


class PlainServer:
    def __init__(self, port: int, redirect_to: str = "http://127.0.0.1:1/"):
        target = redirect_to

        class Handler(BaseHTTPRequestHandler):
            def _json(self, status: int, obj) -> None:
                body = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.startswith("/slow/"):
                    time.sleep(SLOW_S)
                    self._json(200, {"choices": [{"message": {"content": "late"}, "finish_reason": "stop"}]})
                else:
                    self._json(500, {"error": {"message": "internal error"}})

            def do_GET(self):
                for broken in ("slow", "fail"):
                    if self.path.startswith(f"/{broken}/"):
                        self._json(200, {"object": "list", "data": [{"id": broken, "object": "model"}]})
                        return
                if self.path.startswith("/redirect/"):
                    self.send_response(302)
                    self.send_header("Location", target)
                    self.end_headers()
                    return
                body = b"<html><body>a web page, not an API</body></html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.url = f"http://127.0.0.1:{port}"
        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True, name="plain").start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class Upstream:
    def __init__(self, home, allowed, port: int):
        self.home, self.allowed, self.port = home, allowed, port
        self.url = f"http://127.0.0.1:{port}/v1"
        self.seen: list[tuple[str, str, str | None]] = []
        self._server = self._thread = None

    def _app(self):
        from composer.serving import LocalBackend, create_app

        settings = server_settings(self.home, self.allowed)
        backend = LocalBackend(settings)
        app = create_app(backend, settings, backend.registry)

        async def recording(scope, receive, send):
            if scope["type"] == "http":
                headers = dict(scope["headers"])
                auth = headers.get(b"authorization")
                self.seen.append((scope["method"], scope["path"], auth.decode() if auth else None))
            await app(scope, receive, send)

        return recording

    def start(self) -> Upstream:
        import uvicorn

        config = uvicorn.Config(self._app(), host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True, name="upstream")
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the upstream server did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(60)
            self._server = self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
