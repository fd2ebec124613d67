"""Batch invariance: a row's output does not depend on what else is in the batch, nor on when
it joined the host's decoding loop — for every kind of routing (select, merge, ensemble, and
per-token gates: PHATGOOSE, Arrow, GLIDER), greedy, float32: identical tokens alone and in
any mix.

And no leak between users through per-token routing ("Stealing User Prompts from Mixture of
Experts", Yona et al. 2024: with expert-choice routing and capacity limits, whether an
attacker's tokens are dropped reveals a victim's tokens batched beside them). Here every
token's top-k is its own, with no capacity shared across rows: an attacker row's routing
decisions and logits are the same whichever victim, if any, shares its batch.
"""

from __future__ import annotations

import threading

import pytest
import torch

from composer.executor import host_row
from composer.host import RoutingTrace

PROMPTS = [
    "Write these letters backwards: c a t",
    "Count down from 6",
    "Find the largest digit: 3 9 2",
    "Encode with the Caesar cipher, shift one: h e l l o",
    "Count the letters: a b c d",
    "Add the two numbers: 4 5",
]
ROUTERS = {
    "retrieval": {},
    "uniform": {"experts": ["reverse", "max", "add"]},
    "ensemble": {"top_k": 2},
    "phatgoose": {},
    "arrow": {},
    "glider": {"alpha": 3.0},
}
GEN = {"max_new_tokens": 10}


@pytest.fixture(scope="module")
def composer(demo_ocean):
    from composer import Composer

    return Composer(demo_ocean.registry)


@pytest.mark.parametrize("router", sorted(ROUTERS))
def test_a_row_answers_the_same_alone_and_in_any_mix(composer, router):
    target = PROMPTS[0]
    (plan,) = composer.route([target], router=router, **ROUTERS[router])
    alone = composer.execute([target], [plan], **GEN)[0]
    others = [composer.route([p], router=r, **ROUTERS[r])[0] for p, r in zip(PROMPTS[1:], sorted(ROUTERS))]
    for position in (0, 3, 5):  # first, middle, last of a batch mixing every other kind of routing
        plans = [*others[:position], plan, *others[position:]]
        prompts = [*PROMPTS[1 : 1 + position], target, *PROMPTS[1 + position :]]
        batched = composer.execute(prompts, plans, **GEN)[position]
        assert (batched.token_ids, batched.expert) == (alone.token_ids, alone.expert), position


def test_a_row_that_joins_a_running_batch_answers_as_alone(composer):
    engine = composer.host.engine
    assert engine is not None  # the demo base runs the continuous-batching loop
    (plan,) = composer.route([PROMPTS[1]], router="phatgoose")
    alone = composer.execute([PROMPTS[1]], [plan], **GEN)[0]
    long_plan = composer.route([PROMPTS[3]], router="retrieval")[0]
    started = engine.stats["batches"]
    shared = engine.stats["shared"]
    runner = threading.Thread(
        target=composer.execute,
        args=([PROMPTS[3]], [long_plan]),
        kwargs={"max_new_tokens": 96, "fit_context": True},
    )
    runner.start()
    while engine.stats["batches"] < started + 3 and runner.is_alive():  # it is decoding: join it now
        threading.Event().wait(0.005)
    joined = composer.execute([PROMPTS[1]], [plan], **GEN)[0]
    runner.join()
    assert joined.token_ids == alone.token_ids
    if engine.stats["shared"] == shared:  # the long request ended first (fast machine): say so
        pytest.skip("the long request finished before the short one joined; nothing was shared")


def trace_of(host, prompts, rows) -> tuple[torch.Tensor, dict]:
    enc = host.encode(prompts)
    trace = RoutingTrace()
    logits = host.logits(enc["input_ids"], enc["attention_mask"], mixtures=rows, trace=trace)
    decisions = {}
    for path, rs, slots, _ in trace.calls:
        for i, r in enumerate(rs.tolist()):
            if r == len(prompts) - 1:  # the attacker is the last row
                decisions[path] = slots[i]
    return logits[-1], decisions


def test_an_attacker_row_sees_nothing_of_its_batch_neighbours(composer):
    host = composer.host
    attacker = "Reverse the letters: a b c d e f"
    plan = composer.route([attacker], router="arrow", top_k=1)[0]
    victims = ["Reverse the letters: a b c d e g", "Reverse the letters: z z z z z z", "Count down from 9"]
    alone_logits, alone_routes = trace_of(host, [attacker], [host_row(plan)])
    for victim in victims:  # same length and prefix, or not: the attacker's routes and logits do not move
        vplan = composer.route([victim], router="arrow", top_k=1)[0]
        logits, routes = trace_of(host, [victim, attacker], [host_row(vplan), host_row(plan)])
        n = alone_logits.shape[0]
        assert routes.keys() == alone_routes.keys()
        for path in routes:
            assert torch.equal(routes[path][-n:], alone_routes[path]), (victim, path)
        assert torch.allclose(logits[-n:], alone_logits, atol=1e-5), victim
