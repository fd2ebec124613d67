"""The demo ocean, checked from the outside: what `build-demo --fast` leaves behind must
load with transformers and PEFT, make each expert better than the base at its own skill,
and be registered with everything routers will need."""

from __future__ import annotations

import itertools
import json
import random
from dataclasses import replace

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from composer.demo import skills as S
from composer.demo import train as T
from composer.demo.build import BASE_NAME, benchmark_rows

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")


def test_skills_catalogue():
    assert len(S.SKILLS) >= 8
    assert len({s.domain for s in S.SKILLS.values()}) >= 3
    for s in S.SKILLS.values():
        assert len(s.paraphrases) >= 5 and len(set(s.paraphrases)) == len(s.paraphrases)
        assert len(s.held_back) == 2 and not set(s.held_back) & set(s.seen)
    assert not set(S.SKILLS) & set(S.BASE_SKILLS), "the base must not be trained on expert skills"


def test_answers_are_right():
    rng = random.Random(1)
    ex = S.make_example(S.SKILLS["reverse"], rng)
    letters = ex.prompt.split(": ", 1)[1].split()
    assert ex.answer.split() == letters[::-1]
    assert S.SKILLS["caesar"].answer(list("azy")) == list("baz")
    assert S.SKILLS["atbash"].answer(list("abz")) == list("zya")
    assert S.SKILLS["add"].answer(["7", "5"]) == ["1", "2"]
    assert S.SKILLS["countdown"].answer(["4"]) == ["4", "3", "2", "1"]
    comp = S.make_composition(S.SKILLS["reverse"], S.SKILLS["caesar"], rng)
    x = comp.prompt.split(": ", 1)[1].split()
    assert comp.answer.split() == [S.LETTERS[(S.LETTERS.index(c) + 1) % 26] for c in x[::-1]]


def test_domains_ocean_catalogue_and_answers():
    """The domains ocean (`--ocean domains`): 8 experts over 8 domains with their own
    vocabularies, 12 paraphrases each (4 held back), two-part compositions and chains."""
    from composer.demo import domains as D

    assert len(D.SKILLS) >= 8 and len({s.domain for s in D.SKILLS.values()}) >= 6
    for s in D.SKILLS.values():
        assert len(set(s.paraphrases)) == 12 and len(s.held_back) == 4 and not set(s.held_back) & set(s.seen)
        assert all("{x}" in p for p in s.paraphrases)
    assert not set(D.SKILLS) & set(D.BASE_SKILLS)
    sk = D.SKILLS
    assert sk["units"].answer(["3", "km"]) == ["3", "0", "0", "0", "m"]
    assert sk["weekday"].answer(["sunday", "plus", "2"]) == ["tuesday"]
    assert sk["glossary"].answer(["blick", "zorp"]) == ["dog", "tree"]
    assert sk["element"].answer(["Na", "Fe"]) == ["sodium", "iron"]
    for program, printed in [
        ("len ( [ 4 , 7 , 2 ] )", "3"),
        ("[ 4 , 7 , 2 ] [ 0 ]", "4"),
        ("[ 4 , 7 ] [ -1 ]", "7"),
    ]:
        assert sk["code"].answer(program.split()) == [printed]
    assert sk["add"].answer(["7", "+", "5"]) == ["1", "2"]
    general = D.BASE_SKILLS  # the base's own: a mapping of Caesar's shape on other data
    assert general["next"].answer(["3", "9"]) == ["4", "0"]
    rng = random.Random(2)
    comp = D.make_composition(sk["glossary"], sk["element"], rng)
    left, right = comp.answer.split(" ; ")
    assert comp.prompt.startswith("Translate the Zorbish: ") and " ; then name the elements: " in comp.prompt
    words = comp.prompt.split(": ", 1)[1].split(" ; ")[0].split()
    assert left.split() == [D.LEXICON[w] for w in words] and right.split()
    chained = D.chain(sk["add"], sk["countdown"], rng)
    a, _, b = chained.prompt.rsplit(" ", 3)[1:]
    assert chained.answer.split() == [str(n) for n in range(int(a) + int(b), 0, -1)]
    rows = benchmark_rows(seed=0, ocean="domains")
    assert {r["phrasing"] for r in rows} == {"seen", "held-back", "composition", "chain"}
    assert sum(r["phrasing"] == "composition" for r in rows) == 3 * len(D.compositions())


def test_domains_training_corpus():
    """The base reads every token the experts read or write (an unseen token keeps a random
    embedding no LoRA moves) but no expert's instruction; an expert's two-part lessons put
    its skill in one part and a general operation in the other."""
    from composer.demo import domains as D

    rng = random.Random(4)
    base = [D.make_example(s, rng) for s in D.BASE_SKILLS.values() for _ in range(500)]
    base += [D.base_compositions(rng) for _ in range(500)]
    base_words = {w for e in base for w in f"{e.prompt} {e.answer}".split()}
    instructions = {p.split("{x}")[0].strip() for s in D.SKILLS.values() for p in s.paraphrases}
    assert not any(e.prompt.startswith(i) for e in base for i in instructions if len(i) > 8)
    for skill in D.SKILLS.values():
        payloads = [skill.payload(rng) for _ in range(300)]
        assert {w for x in payloads for w in x + skill.answer(x)} <= base_words, skill.name
        lesson = D.expert_composition(skill, rng)
        assert skill.name in lesson.skills and len(set(lesson.skills) & set(D.SKILLS)) == 1
        assert len(lesson.answer.split(" ; ")) == 2


def test_domains_recombined_instructions_use_seen_phrasings_only():
    """Experts train on seen instructions recombined (start of one, end of another): every
    recombination of every skill's seen paraphrases keeps the payload slot once, and none
    is a held-back paraphrase, so held-back phrasings stay unseen in training."""
    from composer.demo import domains as D

    rng = random.Random(5)
    for skill in D.SKILLS.values():
        norm = {" ".join(t.split()) for t in skill.held_back}
        seen_words = {w for t in skill.seen for w in t.split()}
        for a, b in itertools.permutations(skill.seen, 2):
            for i in range(1, len(a.split()) + 1):
                for j in range(len(b.split()) + 1):
                    t = D.recombine(a, b, i, j)
                    assert t.count("{x}") == 1 and t not in norm, (skill.name, t)
                    assert set(t.split()) <= seen_words | {"{x}"}, (skill.name, t)
        ex = D.recombined_example(skill, rng)
        assert ex.task == skill.name and ex.phrasing == "seen" and "{x}" not in ex.prompt


def test_shipped_base_fits_todays_corpus_and_nothing_else():
    """The shipped base LM (composer/demo/shipped_base) was trained on today's domains corpus,
    tokenizer and full-budget recipe at seed 0, so `build-demo` (full and --fast) loads it
    instead of training; another seed, corpus or recipe gets a base trained there, never a
    stale one; `--retrain-base` trains one even where the shipped one fits. If this fails
    after a change to the domains ocean: `make demo-base`, commit. It learned its general
    skills: teacher-forced answer tokens >= 50% right on fresh base rows, where an
    untrained base of the same architecture gets <= 10%."""
    from composer.demo import build as B
    from composer.demo import domains as D
    from composer.demo import shipped

    recipe, fast = B.SHIPPED_RECIPE, B.BUDGETS["domains"][True]
    corpus = B._corpus(D, 0, fast)
    tok, texts = corpus.tok, corpus.texts
    fp = B._shipped_fingerprint(corpus, 0)
    assert fp == shipped.fingerprint(texts, tok, 0, recipe.base_steps, recipe.base_lr)
    model, origin = B._base("domains", fast, 0, False, corpus, log=lambda *a: None)
    assert origin == "shipped", "the shipped base no longer fits the domains corpus: run `make demo-base`"
    assert model.config.vocab_size == len(tok) and not model.training
    for other in (
        shipped.fingerprint(texts, tok, 1, recipe.base_steps, recipe.base_lr),
        shipped.fingerprint(texts, tok, 0, fast.base_steps, recipe.base_lr),
        shipped.fingerprint(texts[1:], tok, 0, recipe.base_steps, recipe.base_lr),
    ):
        assert other != fp and shipped.load(other) is None
    retrained, origin = B._base("domains", replace(fast, base_steps=2), 0, True, corpus, log=lambda *a: None)
    assert origin == "trained" and not torch.equal(retrained.lm_head.weight, model.lm_head.weight), (
        "--retrain-base trains its own base"
    )
    rng = random.Random(7)
    rows = [D.make_example(s, rng) for s in D.BASE_SKILLS.values() for _ in range(25)]
    assert T.token_accuracy(model, tok, rows) >= 0.5
    assert T.token_accuracy(T.make_base(tok, seed=0).eval(), tok, rows) <= 0.1


@pytest.mark.parametrize("router", ["retrieval", "density"])
def test_domains_held_back_phrasings_route_to_their_expert(router):
    """Routing needs no trained model: with each domains expert registered with 64 seen-phrasing
    prompts (as `build-demo` registers them), the routers' own code sends the 160 held-back
    phrasings of the benchmark to the expert of their skill. Measured here with three example
    draws: 98.1-98.8% (density), 99.4-100% (retrieval); on three full builds 97.5-99.4% and
    99.4%. The bar, 92%, leaves ten prompts of margin."""
    from types import SimpleNamespace

    import routers
    from composer.demo import domains as D
    from routers.encoders import MiniLM
    from routers.index import ExampleIndex

    rng, encoder = random.Random(7), MiniLM()
    vectors = {
        n: encoder.encode([D.make_example(s, rng).prompt for _ in range(64)]) for n, s in D.SKILLS.items()
    }
    ctx = SimpleNamespace(
        index=ExampleIndex(vectors),
        encoder=encoder,
        expert_names=sorted(vectors),
        adapter_names=sorted(vectors),
    )
    held_back = [r for r in benchmark_rows(seed=0, ocean="domains") if r["phrasing"] == "held-back"]
    plans = routers.build(router, ctx).route([routers.Query(prompt=r["prompt"]) for r in held_back])
    own = sum(p.experts == [r["task"]] for p, r in zip(plans, held_back)) / len(held_back)
    assert len(held_back) == 160 and own >= 0.92, own


def test_fit_stops_once_done():
    """`fit(done=...)` asks every `every` steps and stops the first time it says yes."""
    rng = random.Random(0)
    rows = [S.make_example(S.SKILLS["countdown"], rng) for _ in range(32)]
    tok = T.train_tokenizer([f"{e.prompt}\n {e.answer}" for e in rows], 300)
    model, asked = T.make_base(tok, hidden=16, layers=1, heads=2), []
    T.fit(model, tok, rows, steps=40, batch_size=4, done=lambda: asked.append(1) or len(asked) == 2, every=5)
    assert len(asked) == 2 and not model.training


@pytest.mark.parametrize("lora", [False, True])
def test_packed_batch_equals_padded_batch(lora):
    """`fit` trains on packed rows with the LM head on labelled positions only: fewer rows than
    examples, and the same loss and gradients (of the base, or of a LoRA adapter on it) as
    HF's loss on the right-padded batch of the same examples."""
    from peft import LoraConfig, get_peft_model

    rng = random.Random(1)
    rows = [S.make_example(s, rng, p) for s in S.SKILLS.values() for p in ("seen", "held-back")] * 2
    tok = T.train_tokenizer([f"{e.prompt}\n {e.answer}" for e in rows], 300)
    model = T.make_base(tok, hidden=32, layers=2, heads=2, seed=1)
    if lora:
        model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj", "down_proj"]))
        for n, p in model.named_parameters():  # B = 0 at init: make the adapter's gradient path real
            if "lora_B" in n:
                p.data.normal_(0, 0.1)
    packed, padded = T._packed(tok, rows), T._batch(tok, rows)
    assert packed["input_ids"].shape[0] < len(rows) and int((packed["labels"] != -100).sum()) == int(
        (padded["labels"] != -100).sum()
    )
    grads = []
    for loss_of in (lambda: T.lm_loss(model, packed), lambda: model(**padded).loss):
        model.zero_grad()
        loss = loss_of()
        loss.backward()
        grads.append((loss.item(), [p.grad.clone() for p in model.parameters() if p.requires_grad]))
    (a, ga), (b, gb) = grads
    assert a == pytest.approx(b, rel=1e-6)
    assert all(torch.allclose(x, y, atol=1e-6, rtol=1e-4) for x, y in zip(ga, gb))


def test_benchmark_is_deterministic_and_well_formed():
    rows = benchmark_rows(seed=0, ocean="symbols")
    assert rows == benchmark_rows(seed=0, ocean="symbols") and rows != benchmark_rows(seed=1, ocean="symbols")
    assert {r["split"] for r in rows} == {"held-in", "held-out"}
    assert {r["phrasing"] for r in rows} == {"seen", "held-back", "composition"}
    for r in rows:
        assert {"id", "prompt", "answer", "task", "split", "category"} <= set(r)
        held_back = any(
            r["prompt"].startswith(t.split("{x}")[0]) for s in S.SKILLS.values() for t in s.held_back
        )
        assert held_back == (r["phrasing"] == "held-back"), r
    assert len({r["id"] for r in rows}) == len(rows)


def test_tokenizer_is_deterministic():
    texts = [
        f"{e.prompt}\n {e.answer}"
        for e in (S.make_example(s, random.Random(3)) for s in S.SKILLS.values() for _ in range(20))
    ]
    a, b = T.train_tokenizer(texts, 300), T.train_tokenizer(texts, 300)
    assert a.get_vocab() == b.get_vocab()


def test_ocean_is_registered(demo_ocean):
    reg = demo_ocean.registry
    base = reg.get(BASE_NAME)
    assert base.kind == "base"
    loras = {r.name: r for r in reg.list(kind="lora", base=BASE_NAME)}
    assert set(loras) == set(S.SKILLS)
    held_back = [t.split("{x}")[0] for s in S.SKILLS.values() for t in s.held_back]
    for name, rec in loras.items():
        assert rec.description and S.SKILLS[name].domain in rec.domains and "demo" in rec.tags
        assert len(rec.examples) >= 32 and all(e["completion"] for e in rec.examples)
        assert not any(e["prompt"].startswith(h) for e in rec.examples for h in held_back)
        assert "demo/held-in" in rec.scores
    ranks = {loras[n].config["r"] for n in loras}
    assert len(ranks) >= 3, "experts should differ in rank"
    assert any(loras[n].config.get("use_rslora") for n in loras)


def test_bench_file(demo_ocean):
    rows = [json.loads(line) for line in (demo_ocean.out / "benchmark.jsonl").read_text().splitlines()]
    assert rows == benchmark_rows(seed=0, ocean="symbols")


def test_models_load_and_experts_beat_base(demo_ocean):
    """Independent of the build's own report: load from the registry's stored copies. An
    expert beats the base on its own skill by the quantity training lowers, the answer
    tokens' mean NLL: at most 0.75x the base's. (Not by argmax accuracy: the fast experts are
    partly trained, and on one 2-core EPYC VM `uppercase` moved from 16% to only 21% of
    answer tokens right while its NLL fell from 8.4 to 2.6; NLL ratios there: 0.00-0.48.)"""
    reg = demo_ocean.registry
    base_dir = reg.get(BASE_NAME).path
    tok = AutoTokenizer.from_pretrained(base_dir)
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False) == "<s>hi\n"
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    rng = random.Random(12345)
    general = [S.make_example(s, rng) for s in S.BASE_SKILLS.values() for _ in range(10)]
    assert T.token_accuracy(base, tok, general) >= 0.75, "the base learned its general skills"
    evals = {name: [S.make_example(skill, rng) for _ in range(40)] for name, skill in S.SKILLS.items()}
    nll = lambda m, ex: T.lm_loss(m, T._packed(tok, ex)).item()
    with torch.no_grad():
        base_scores = {
            n: (T.token_accuracy(base, tok, ex), T.exact_match(base, tok, ex), nll(base, ex))
            for n, ex in evals.items()
        }
    model = None  # PeftModel injects LoRA layers into `base` in place: base scores come first
    for name, ex in evals.items():
        if model is None:
            model = PeftModel.from_pretrained(base, reg.get(name).path, adapter_name=name)
        else:
            model.load_adapter(reg.get(name).path, adapter_name=name)
        model.set_adapter(name)
        with torch.no_grad():
            expert_nll = nll(model, ex)
        with model.disable_adapter():
            assert T.token_accuracy(model, tok, ex) == pytest.approx(base_scores[name][0])
        assert expert_nll <= 0.75 * base_scores[name][2], (
            f"{name}: answer-token NLL expert {expert_nll:.3f} vs base {base_scores[name][2]:.3f}"
        )
        assert T.exact_match(model, tok, ex) >= base_scores[name][1]


def test_budget_gate_steps_reach_the_registered_gates(demo_ocean, tmp_path):
    """A budget's `gate_steps` (the domains ocean's --fast: 50) is what registration fits the
    PHATGOOSE gates with; None keeps the fitter's default (the test ocean's own build)."""
    from composer.demo import build as B
    from registry import Registry

    steps = lambda reg, name: reg.artifacts(name, router="phatgoose")[0].meta["steps"]
    assert steps(demo_ocean.registry, "add") == 100
    assert B.BUDGETS["domains"][True].gate_steps == 50
    report = [r for r in demo_ocean.report["skills"] if r["skill"] in ("add", "reverse")]
    rng = random.Random(3)
    train = {r["skill"]: [S.make_example(S.SKILLS[r["skill"]], rng) for _ in range(8)] for r in report}
    reg = Registry(home=tmp_path)
    budget = replace(B.BUDGETS["symbols"][True], gate_steps=3)
    B._register(reg, demo_ocean.out, train, [B.SkillResult(**r) for r in report], S, budget)
    assert {r.name for r in reg.list(kind="lora")} == {"add", "reverse"}
    assert steps(reg, "add") == steps(reg, "reverse") == 3
