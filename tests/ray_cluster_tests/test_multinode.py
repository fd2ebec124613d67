"""Two Ray nodes on this machine serving one registry: the multi-node story, shown.

`ray start --head` and `ray start --address` each start a node with its own temp dir, one
CPU and the custom resource `composer_host` (each offers one); the registry lives on the
throwaway PostgreSQL server (tests/helpers/postgres.py; skipped with the reason where it
cannot run) and a store directory both nodes share. Composer joins the cluster with two host
replicas that each ask for `composer_host=1` (COMPOSER_HOST_REPLICAS,
COMPOSER_HOST_RESOURCES), so one lands on each node. An expert registered over REST (by the
router deployment, on one of the nodes) is then served by the host replicas of both nodes
(`X-Composer-Replica` names the one that answered), each answering as the in-process API
does with the same weights.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from helpers import postgres
from helpers.api import wait_until
from helpers.server import KEY

from composer.serving.archive import pack
from composer.serving.ports import free_port

pytestmark = pytest.mark.slow
WORDS = ["m n o", "z y x w", "k e", "p l u s h", "t", "g h i j k l", "v w", "b o a t", "c r a b s", "f e d"]
PROMPT = "Tally the letters in this word: h o u s e"


def start_node(root: Path, *args: str) -> subprocess.Popen:
    """`ray start ... --block`: the node lives as long as this process (SIGTERM stops it all)."""
    cli = Path(sys.executable).with_name("ray")
    common = ["--block", "--num-cpus=1", "--disable-usage-stats", "--node-ip-address=127.0.0.1"]
    with open(root.with_suffix(".log"), "wb") as log:  # the child keeps its own copy of the handle
        return subprocess.Popen(
            [str(cli), "start", f"--temp-dir={root}", *common, *args], stdout=log, stderr=log
        )


def accepts(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def cluster(monkeypatch):
    """The GCS address of a two-node cluster on this machine (stopped afterwards): node_a (head)
    and node_b, each with one CPU and one `composer_host`."""
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    roots = [Path(f"/tmp/rn{os.getpid()}{n}") for n in "ab"]  # short: socket paths have a length limit
    port, procs = free_port(), []
    try:
        procs.append(
            start_node(
                roots[0],
                "--head",
                f"--port={port}",
                "--include-dashboard=false",
                '--resources={"node_a": 1, "composer_host": 1}',
            )
        )
        wait_until(lambda: accepts(port) or procs[0].poll() is not None, "the head node listens", 120)
        assert procs[0].poll() is None, roots[0].with_suffix(".log").read_text()[-2000:]
        procs.append(
            start_node(
                roots[1], f"--address=127.0.0.1:{port}", '--resources={"node_b": 1, "composer_host": 1}'
            )
        )
        yield f"127.0.0.1:{port}"
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
        for r in roots:
            shutil.rmtree(r, ignore_errors=True)
            r.with_suffix(".log").unlink(missing_ok=True)


def alive_nodes() -> dict[str, str]:
    """{node id: "node_a" | "node_b"} of the cluster's live nodes."""
    import ray

    return {
        n["NodeID"]: next((r for r in n["Resources"] if r.startswith("node_")), "?")
        for n in ray.nodes()
        if n["Alive"]
    }


@pytest.fixture
def pg_url():
    try:
        server = postgres.start()
    except postgres.Unavailable as e:
        pytest.skip(str(e))
    try:
        yield server.create_database()
    finally:
        server.stop()


def test_an_expert_registered_on_one_node_is_served_by_replicas_on_both(
    demo_ocean, cluster, pg_url, tmp_path
):
    from composer import Composer
    from composer.settings import Settings
    from ray_cluster.launch import serve, shutdown
    from registry import Registry

    address = cluster
    settings = Settings(
        home=str(tmp_path / "home"),
        db_url=pg_url,
        store=str(tmp_path / "shared-store"),
        api_key=KEY,
        threads=1,
        host_replicas=2,
        host_resources=("composer_host=1",),
    )
    reg = settings.registry()
    reg.register(demo_ocean.out / "base", "demo-base", kind="base")
    reg.close()

    url = serve(settings, "127.0.0.1", free_port(), address=address, block=False, proxy_location="HeadOnly")
    try:
        nodes = wait_until(lambda: len(alive_nodes()) == 2 and alive_nodes(), "both nodes are up", 120)
        assert sorted(nodes.values()) == ["node_a", "node_b"], nodes
        with httpx.Client(base_url=url, timeout=300) as http:
            meta = {
                "name": "tally",
                "description": "Tallies letters in a word.",
                "examples": [f"Tally the letters in this word: {w}" for w in WORDS],
                "fit_options": {"phatgoose": {"steps": 20}},
            }
            r = http.post(
                "/v1/experts",
                files={"archive": ("t.zip", pack(demo_ocean.out / "experts" / "length"))},
                data={"metadata": json.dumps(meta)},
                headers={"Authorization": f"Bearer {KEY}"},
            )
            assert r.status_code == 201, r.text

            seen: dict[str, str] = {}  # node id -> the answer its replica gave

            def both_nodes_served() -> bool:
                r = http.post(
                    "/v1/chat/completions",
                    json={
                        "model": "composer",
                        "max_tokens": 16,
                        "messages": [{"role": "user", "content": PROMPT}],
                    },
                )
                assert r.status_code == 200, r.text
                assert r.json()["routing"]["served_by"] == "tally"
                seen[r.headers["x-composer-replica"].split("/")[0]] = r.json()["choices"][0]["message"][
                    "content"
                ]
                return len(seen) == 2

            wait_until(both_nodes_served, "a replica on each node answered", 240, interval_s=0)
    finally:
        shutdown(False)
    assert set(seen) == set(nodes)  # one host replica per node, each serving the new expert
    local = Composer(Registry(home=demo_ocean.home)).generate([PROMPT], expert="length", max_new_tokens=16)[0]
    assert set(seen.values()) == {local.text}  # tally holds length's weights: same answer everywhere
