"""`composer serve`: start (or join) Ray, run the Serve app, wait, shut down cleanly.

Contract: `serve(settings, host, port, address=None, on_ready=None, block=True, num_cpus=None,
proxy_location="EveryNode")` refuses a non-loopback `host` without `settings.api_key`
(`UnsafeBind`); starts an embedded local Ray (no dashboard; temp dir and auth mode from the
environment as Ray reads them) or joins `address`; starts Serve's HTTP proxies on host:port
(one per node; "HeadOnly" where several nodes share one machine, hence the port); deploys
the app as "composer" on "/"; waits until /readyz answers 200, then calls `on_ready(url)`. With `block=True` it then
sleeps until Ctrl-C / SIGTERM and shuts Serve and Ray down (a joined cluster keeps
running; only the app is deleted). `shutdown(own_ray)` does the same for callers that
passed `block=False` (`own_ray`: no `address` was given).
"""

from __future__ import annotations

import ipaddress
import json
import shlex
import signal
import time
import urllib.request

from composer.settings import Settings


class UnsafeBind(RuntimeError):
    """Binding beyond loopback without an API key."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def wait_ready(url: str, timeout_s: float = 300) -> None:
    deadline, last = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError as e:
            last = e
        time.sleep(0.5)
    raise TimeoutError(f"Composer did not become ready at {url} in {timeout_s:.0f}s ({last})")


def serve(
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 8000,
    address: str | None = None,
    on_ready=None,
    block: bool = True,
    num_cpus: int | None = None,
    proxy_location: str = "EveryNode",
) -> str:
    if not is_loopback(host) and not settings.api_key:
        raise UnsafeBind(
            f"refusing to bind {host}: without COMPOSER_API_KEY the server binds loopback only "
            "(set the key, or use --host 127.0.0.1)"
        )
    import ray
    from ray import serve as rserve

    from ray_cluster.app import build

    own = address is None  # our embedded Ray: shut it all down at the end; a joined cluster keeps running
    if not ray.is_initialized():
        ray.init(
            address=address,
            include_dashboard=False,
            num_cpus=num_cpus if own else None,
            namespace="composer",
            log_to_driver=False,
            runtime_env={
                "env_vars": {
                    "HF_HUB_OFFLINE": "1",
                    "TOKENIZERS_PARALLELISM": "false",
                    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
                }
            },
        )
    rserve.start(http_options={"host": host, "port": port}, proxy_location=proxy_location)
    rserve.run(build(settings), name="composer", route_prefix="/", blocking=False)
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    wait_ready(url)
    if on_ready:
        on_ready(url)
    if block:
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops like Ctrl-C
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the shutdown short
            shutdown(own)
    return url


def shutdown(own_ray: bool) -> None:
    """Stop Serve and the embedded Ray (`own_ray`), or delete only our app from a joined cluster."""
    import ray
    from ray import serve as rserve

    try:
        if own_ray:
            rserve.shutdown()
        else:
            rserve.delete("composer")
    finally:
        ray.shutdown()  # the embedded cluster, or just this driver's connection


def examples(url: str, prompt: str = "Say hello", other: str = "Say hi") -> str:
    """Ready-to-paste curl and OpenAI-client snippets for a running server, on two prompts."""
    chat = json.dumps({"model": "composer", "messages": [{"role": "user", "content": prompt}]})
    route = json.dumps({"prompt": other, "routing": {"router": "coe"}})
    return f"""curl -s {url}/v1/chat/completions -H 'Content-Type: application/json' -d {shlex.quote(chat)}
curl -s {url}/v1/route -H 'Content-Type: application/json' -d {shlex.quote(route)}
curl -s {url}/v1/models

python - <<'PY'
import os
from openai import OpenAI
client = OpenAI(base_url="{url}/v1", api_key=os.environ.get("COMPOSER_API_KEY", "unused"))
r = client.chat.completions.create(model="composer", messages=[{{"role": "user", "content": {other!r}}}])
print(r.choices[0].message.content, "<- served by", r.model_extra["routing"]["served_by"])
PY"""
