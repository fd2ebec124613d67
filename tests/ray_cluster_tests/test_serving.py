"""The REST service on Ray Serve, against a real server on loopback (started and stopped here).

What only a running service shows: the OpenAI client through Serve's proxy, requests of
several clients sharing host batches, a registration reaching every replica during traffic,
the whole-model deployment, evaluation jobs on their deployment. (Error shapes, auth and
refused input run in-process: tests/composer_tests/serving/test_errors.py, test_bad_*.py.)
One server per module, on a private copy of the fast demo ocean, with an API key and one
allowed root for server-side registration. Ray runs embedded with its files in a temp dir
and auth disabled, so nothing is written to $HOME. Answers are checked by relations (the
server answers as the in-process API does, a batched request as it does alone, a stopped
answer is the unstopped one cut), never against the partly trained experts' exact text;
tests wait on observable state (answers, metrics), never on a fixed delay.
"""

from __future__ import annotations

import json
import threading

import httpx
import pytest
from helpers.api import COUNTDOWN, REVERSE, answer, chat, metric, wait_until
from helpers.server import KEY, assert_error, ray_server

from composer.serving.archive import pack
from composer.settings import DEFAULT_ROUTER

pytestmark = pytest.mark.slow
BATCHING_ATTEMPTS = 5


@pytest.fixture(scope="module")
def server(demo_ocean, tmp_path_factory):
    with ray_server(demo_ocean, tmp_path_factory.mktemp("serving")) as s:
        yield s


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server["url"], timeout=120) as c:
        yield c


def test_openai_client_routed_direct_streaming_and_models(server, http):
    from openai import OpenAI

    from composer import Composer
    from registry import Registry

    client = OpenAI(base_url=server["url"] + "/v1", api_key="unused-for-reads")
    ids = {m.id for m in client.models.list().data}
    assert {"composer", "composer:phatgoose", "composer:coe", "demo-base", "reverse", "countdown"} <= ids

    routed = client.chat.completions.create(model="composer", messages=[{"role": "user", "content": REVERSE}])
    routing = routed.model_extra["routing"]
    assert routing["router"] == DEFAULT_ROUTER and routing["served_by"] == "reverse"
    direct = client.chat.completions.create(model="reverse", messages=[{"role": "user", "content": REVERSE}])
    assert direct.model_extra["routing"]["router"] == "direct"
    # the server answers exactly as the in-process API does with the same expert
    local = Composer(Registry(home=server["ocean"].home)).generate(
        [REVERSE], expert="reverse", max_new_tokens=128
    )[0]
    assert routed.choices[0].message.content == direct.choices[0].message.content == local.text
    assert routed.usage.completion_tokens == len(local.token_ids)

    chunks = list(
        client.chat.completions.create(
            model="composer",
            stream=True,
            stream_options={"include_usage": True},
            messages=[{"role": "user", "content": REVERSE}],
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == local.text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.completion_tokens == len(local.token_ids)

    # /v1/completions is raw text (no chat template): the demo's own rendering gives the same answer
    raw = client.completions.create(model="reverse", prompt=f"<s>{REVERSE}\n", max_tokens=32)
    assert raw.choices[0].text == local.text

    token = client.chat.completions.create(
        model="composer:phatgoose", messages=[{"role": "user", "content": COUNTDOWN}], max_tokens=8
    )
    assert token.model_extra["routing"]["mode"] == "token" and token.usage.completion_tokens <= 8
    # a stop string cuts the answer before it (OpenAI: the stop string is not returned)
    full = client.chat.completions.create(
        model="countdown", messages=[{"role": "user", "content": COUNTDOWN}]
    )
    text = full.choices[0].message.content
    assert text, "the countdown expert answered nothing"
    stop = " 3" if " 3" in text else text[len(text) // 2 : len(text) // 2 + 2]  # one the answer holds
    stopped = client.chat.completions.create(
        model="countdown", messages=[{"role": "user", "content": COUNTDOWN}], stop=[stop]
    )
    assert stopped.choices[0].message.content == text[: text.index(stop)]
    assert stopped.choices[0].finish_reason == "stop"


def content(r: httpx.Response) -> str:
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["message"]["content"]


def test_concurrent_requests_share_mixed_adapter_batches(http):
    """Requests for different adapters and routers meet in host batches (the `shared` batching
    metric grows), and each batched request answers exactly as it does alone. Whether they
    meet depends on timing, so this retries a bounded number of times until they did, checking
    the answers on every attempt."""
    requests = [
        ("reverse", REVERSE),
        ("countdown", COUNTDOWN),
        ("composer", REVERSE),
        ("add", "Add 2 and 3"),
        ("composer:uniform", COUNTDOWN),
        ("max", "Largest of: 3 9 4"),
        ("demo-base", REVERSE),
        ("composer:arrow", COUNTDOWN),
    ]
    # one request of 32 prompts keeps the host busy while the others queue up
    busy_body = {"model": "reverse", "prompt": [f"<s>{REVERSE}\n"] * 32, "max_tokens": 48}

    def texts(r: httpx.Response) -> list[str]:
        assert r.status_code == 200, r.text
        return [c["text"] for c in r.json()["choices"]]

    alone = [answer(http, *req) for req in requests]
    busy_alone = texts(http.post("/v1/completions", json=busy_body))
    for _ in range(BATCHING_ATTEMPTS):
        shared = metric(http, "composer_host_batching", base="demo-base", stat="shared")
        results: list = [None] * (len(requests) + 1)

        def busy(results=results) -> None:
            results[-1] = http.post("/v1/completions", json=busy_body)

        def send(i: int, results=results) -> None:
            results[i] = chat(http, *requests[i])

        threads = [threading.Thread(target=busy)]
        threads[0].start()
        wait_until(
            lambda results=results: (
                results[-1] is not None or metric(http, "composer_requests_in_flight") > 0
            ),
            "the busy request is admitted",
            60,
        )
        threads += [threading.Thread(target=send, args=(i,)) for i in range(len(requests))]
        for t in threads[1:]:
            t.start()
        for t in threads:
            t.join()
        # batched with others, every request answers as it does alone
        assert [content(r) for r in results[:-1]] == alone
        assert texts(results[-1]) == busy_alone
        if metric(http, "composer_host_batching", base="demo-base", stat="shared") > shared:
            return  # requests met in a batch
    pytest.fail(f"the requests never shared a host batch in {BATCHING_ATTEMPTS} attempts")


def test_route_explains_without_generating(http):
    r = http.post("/v1/route", json={"prompt": [REVERSE, COUNTDOWN], "routing": {"router": "coe"}})
    assert r.status_code == 200, r.text
    plans = r.json()["data"]
    assert [p["experts"] for p in plans] == [["reverse"], ["countdown"]] and all(
        p["explanation"] for p in plans
    )
    routers = http.get("/v1/routers").json()
    assert routers["default"] == DEFAULT_ROUTER and "top_k" in json.dumps(
        next(x for x in routers["data"] if x["name"] == "phatgoose")["config_schema"]
    )
    assert http.get("/openapi.json").json()["paths"]["/v1/chat/completions"]


def test_register_during_traffic_then_route_to_it_and_remove(server, http):
    auth = {"Authorization": f"Bearer {KEY}"}
    prompts = ["Tally the letters in this word: a b c d", "Tally the letters in this word: h o u s e"]
    assert all(
        p["experts"] != ["tally"] for p in http.post("/v1/route", json={"prompt": prompts}).json()["data"]
    )
    statuses: list[int] = []
    stop = threading.Event()

    def traffic():
        with httpx.Client(base_url=server["url"], timeout=120) as c:
            while not stop.is_set():
                try:
                    statuses.append(
                        chat(c, "composer", COUNTDOWN if len(statuses) % 2 else REVERSE).status_code
                    )
                except httpx.HTTPError:
                    statuses.append(-1)

    worker = threading.Thread(target=traffic)
    worker.start()
    try:
        wait_until(lambda: len(statuses) >= 2, "the traffic is served", 120)
        words = [
            "m n o",
            "z y x w",
            "k e",
            "p l u s h",
            "t",
            "g h i j k l",
            "v w",
            "b o a t",
            "c r a b s",
            "f e d",
        ]
        meta = {
            "name": "tally",
            "description": "Tallies letters in a word.",
            "examples": [f"Tally the letters in this word: {w}" for w in words],
            "fit_options": {"phatgoose": {"steps": 20}},
        }
        r = http.post(
            "/v1/experts",
            files={"archive": ("tally.zip", pack(server["ocean"].out / "experts" / "length"))},
            data={"metadata": json.dumps(meta)},
            headers=auth,
        )
        assert r.status_code == 201, r.text
        assert r.json()["name"] == "tally" and "path" not in r.json()
        served = len(statuses)
        wait_until(lambda: len(statuses) >= served + 2, "the traffic goes on after the registration", 120)
    finally:
        stop.set()
        worker.join()
    assert len(statuses) >= 3 and set(statuses) == {200}, statuses  # nobody failed during registration

    assert "tally" in {m["id"] for m in http.get("/v1/models").json()["data"]}
    assert [p["experts"] for p in http.post("/v1/route", json={"prompt": prompts}).json()["data"]] == [
        ["tally"]
    ] * 2
    served = [chat(http, "composer", p).json() for p in prompts]
    assert [s["routing"]["served_by"] for s in served] == ["tally", "tally"]
    # tally holds length's weights: the new slot answers as length does
    assert [s["choices"][0]["message"]["content"] for s in served] == [
        chat(http, "length", p).json()["choices"][0]["message"]["content"] for p in prompts
    ]
    assert (
        f'composer_routing_decisions_total{{expert="tally",router="{DEFAULT_ROUTER}"}}'
        in http.get("/metrics").text
    )

    assert http.delete("/v1/experts/tally", headers=auth).json()["deleted"] is True
    assert "tally" not in {m["id"] for m in http.get("/v1/models").json()["data"]}
    assert all(
        p["experts"] != ["tally"] for p in http.post("/v1/route", json={"prompt": prompts}).json()["data"]
    )
    assert_error(chat(http, "tally", prompts[0]), 404)


def test_whole_model_expert_is_routed_beside_loras(server, http):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from registry import Registry

    auth = {"Authorization": f"Bearer {KEY}"}
    reg = Registry(home=server["home"])
    base, lora = reg.get("demo-base"), reg.get("countdown")
    merged = server["allowed"] / "countdown-full"
    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base.path), lora.path
    ).merge_and_unload()
    model.save_pretrained(merged)
    AutoTokenizer.from_pretrained(base.path).save_pretrained(merged)
    expected = chat(http, "countdown", COUNTDOWN).json()["choices"][0]["message"]["content"]

    assert http.delete("/v1/experts/countdown", headers=auth).status_code == 200
    r = http.post(
        "/v1/experts",
        json={
            "name": "countdown-full",
            "kind": "model",
            "path": str(merged),
            "description": lora.description,
            "examples": [e["prompt"] for e in lora.examples],
        },
        headers=auth,
    )
    assert r.status_code == 201, r.text
    assert r.json()["kind"] == "model"
    routed = chat(http, "composer", COUNTDOWN).json()
    assert routed["routing"]["served_by"] == "countdown-full"
    assert routed["choices"][0]["message"]["content"] == expected  # merged weights answer as the LoRA did
    streamed = [
        line
        for line in http.post(
            "/v1/chat/completions",
            json={
                "model": "countdown-full",
                "stream": True,
                "messages": [{"role": "user", "content": COUNTDOWN}],
            },
        ).text.splitlines()
        if line.startswith("data: {")
    ]
    assert "".join(json.loads(x[6:])["choices"][0]["delta"].get("content", "") for x in streamed) == expected
    assert "composer_models_resident 1.0" in http.get("/metrics").text
    # token-level and merging routers only use adapters; they still serve
    assert chat(http, "composer:uniform", COUNTDOWN).json()["routing"]["mode"] == "merge"
    assert "countdown-full" not in chat(http, "composer:phatgoose", COUNTDOWN).json()["routing"]["experts"]


def test_evaluation_job_reports_progress_and_matches_the_cli(server, http, tmp_path):
    from composer.cli import main

    auth = {"Authorization": f"Bearer {KEY}"}
    rows = [json.loads(line) for line in (server["ocean"].out / "benchmark.jsonl").read_text().splitlines()]
    picked = [r for r in rows if r["task"] == "reverse"][:3] + [r for r in rows if r["split"] == "held-out"][
        :3
    ]
    bad = http.post(
        "/v1/evaluations",
        json={"examples": [*picked, {"id": "x", "prompt": "p"}], "routers": "base"},
        headers=auth,
    )
    assert "examples[6]" in assert_error(bad, 400)["message"]
    assert_error(
        http.post("/v1/evaluations", json={"examples": picked, "routers": "no-such-router"}, headers=auth),
        400,
    )
    assert_error(
        http.post("/v1/evaluations", json={"benchmark": "demo"}, headers=auth), 400
    )  # none in this home
    r = http.post(
        "/v1/evaluations",
        json={"examples": picked, "routers": ["base", "oracle", "expert:reverse"]},
        headers=auth,
    )
    assert r.status_code == 202, r.text
    job = r.json()
    assert (
        job["status"] in ("queued", "running")
        and job["total"] == 18
        and set(job["progress"]) == {"base", "oracle", "expert:reverse"}
    )

    def finished() -> dict | None:
        view = http.get(f"/v1/evaluations/{job['id']}", params={"records": "true"}).json()
        return view if view["status"] in ("done", "failed") else None

    job = wait_until(finished, "the evaluation job finished", 300, 0.5)
    assert job["status"] == "done", job
    assert job["done"] == job["total"] == 18

    bench = tmp_path / "bench.jsonl"
    bench.write_text("\n".join(json.dumps(x) for x in picked))
    assert (
        main(
            [
                "--home",
                str(server["ocean"].home),
                "eval",
                "--benchmark",
                str(bench),
                "--routers",
                "base,oracle,expert:reverse",
                "--out",
                str(tmp_path / "cli"),
                "--no-cache",
            ]
        )
        == 0
    )
    cli = json.loads((tmp_path / "cli" / "results.json").read_text())
    key = lambda rec: (rec["id"], rec["router"], rec["prediction"], rec["correct"], rec["experts"])
    assert [key(x) for x in job["records"]] == [key(x) for x in cli["records"]]
    strip = lambda rows_: [{k: v for k, v in x.items() if k != "examples_per_s"} for x in rows_]
    assert strip(job["summary"]) == strip(cli["summary"])
    assert_error(http.get("/v1/evaluations/nope"), 404)
