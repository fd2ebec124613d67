"""`composer build-demo`: train the demo ocean offline and register it.

Contract: `build_demo(registry, out_dir, fast=False, seed=0, ocean="domains",
retrain_base=False)` trains, from scratch and with no network, a byte-level BPE tokenizer and
a small Llama base LM on the general skills (`BASE_SKILLS` of the ocean's module, `OCEANS`:
"symbols" = `skills`, eight skills over letters and digits; "domains" = `domains`, eight
domains with their own vocabularies, whose base also learns the two-part format of
compositions), then one LoRA
expert per skill in its `SKILLS` (ranks, alphas, rsLoRA and target modules vary on purpose;
domains: also on its skill inside the two-part format, and until it is right on a
validation set within the budget's step range: `BUDGETS[ocean][fast]`), and writes under
`out_dir`. The domains ocean's base LM at seed 0 is shipped (`shipped`: trained by
`ship_base`, the full budget's recipe; fast builds use it too), so the build loads it instead
of training whenever its fingerprint matches this corpus, tokenizer and recipe, unless
`retrain_base`. It writes:

    base/                HF model + tokenizer (AutoModelForCausalLM / AutoTokenizer)
    experts/<skill>/     PEFT adapters (safetensors)
    benchmark.jsonl      DESIGN §6 rows: held-in and held-out (held-back phrasings, compositions;
                         domains: two-domain compositions, 3 per ordered pair, and two-step chains)
    report.json          per-skill exact match of the base and of the skill's expert

then registers the base as `BASE_NAME` and every expert with description, tags, domains,
example prompts (with completions), its held-in score and its post-hoc router artifacts,
and fits the all-expert routers (coe on the registered examples, bench_coe on the experts'
scores on each other's examples), so every router works on the ocean out of the box. The same seed gives the same
corpus, tokenizer and (on the same torch thread count) the same weights.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model

from composer.demo import domains, shipped, skills
from composer.demo import train as T
from registry import Registry

BASE_NAME = "demo-base"
_ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# Varied on purpose: the host must handle different ranks, scalings and target modules.
LORA = {
    "wide": {"r": 8, "lora_alpha": 16, "target_modules": _ALL},
    "rslora": {"r": 16, "lora_alpha": 16, "use_rslora": True, "target_modules": _ALL},
    "narrow": {
        "r": 4,
        "lora_alpha": 8,
        "target_modules": ["q_proj", "v_proj", "o_proj", "up_proj", "down_proj"],
    },
}
OCEANS = {"symbols": skills, "domains": domains}  # skill modules: SKILLS, BASE_SKILLS, make_example ...
DEFAULT_OCEAN = "domains"  # `make demo`'s; the test suite builds the faster "symbols" ocean
EXPERT_LORA = {
    "units": "narrow",
    "weekday": "rslora",
    "glossary": "wide",
    "element": "rslora",
    "code": "wide",
    "reverse": "wide",
    "uppercase": "narrow",
    "caesar": "wide",
    "atbash": "rslora",
    "add": "rslora",
    "max": "narrow",
    "length": "wide",
    "countdown": "rslora",
}


@dataclass(frozen=True)
class Budget:
    base_steps: int
    expert_steps: int
    eval_per_skill: int
    base_lr: float = 3e-3
    expert_lr: float = 4e-3
    expert_batch: int = 64
    # an expert stops early once this share of its validation prompts' answer tokens is right
    converged: float | None = None
    min_expert_steps: int = 0  # ... but not before this many steps (unseen phrasings need them)
    gate_steps: int | None = None  # PHATGOOSE gate steps at registration (None: the fitter's default, 100)


FULL = Budget(base_steps=900, expert_steps=450, eval_per_skill=100)
FAST = Budget(base_steps=500, expert_steps=100, eval_per_skill=40, expert_lr=6e-3)
# the domains ocean's base learns its item-by-item mapping (on which Caesar builds) reliably only
# with twice the steps; its experts learn lookup tables (Caesar, Zorbish, elements) in the two-part format
# too: smaller batches, up to twice the steps, each stopping once it is right
BUDGETS = {
    "symbols": {False: FULL, True: FAST},
    "domains": {
        False: Budget(
            base_steps=1800,
            expert_steps=900,
            eval_per_skill=100,
            expert_batch=32,
            converged=0.995,
            min_expert_steps=300,
        ),
        # --fast: half the gate steps: a gate's loss is near its floor by then and it routes no worse
        # (README, build-fast-shipped-3.json); 17 s of a 126 s build
        True: replace(FAST, gate_steps=50),
    },
}
SHIPPED_RECIPE = BUDGETS["domains"][False]  # the budget whose base is shipped (`ship_base`)


@dataclass
class SkillResult:
    skill: str
    domain: str
    lora: str
    base_acc: float  # exact match
    expert_acc: float
    base_tok: float  # teacher-forced answer-token accuracy
    expert_tok: float
    train_s: float


def _expert_examples(S, skill: skills.Skill, rng: random.Random, n: int) -> list[skills.Example]:
    """An expert's training rows: its plain prompts, then (oceans with a two-part format) half
    as many with its skill in one part of the format and a general operation in the other."""
    rows = [S.make_example(skill, rng) for _ in range(n)]
    if hasattr(S, "expert_composition"):
        rows += [S.expert_composition(skill, rng) for _ in range(n // 2)]
    return rows


def _recombined_lessons(S, skill: skills.Skill, rng: random.Random, n: int) -> list[skills.Example]:
    """More lessons for an expert whose ocean has recombined instructions: n // 2 prompts
    worded by recombining its seen instructions, and n // 4 more two-part lessons (so a third
    of its one-part prompts are recombined and a third of all its rows are two-part, as in
    the measurement that chose them). Drawn from their own stream after the tokenizer is
    trained, so the tokenizer and base do not depend on how the experts are taught."""
    if not hasattr(S, "recombined_example"):
        return []
    return [S.recombined_example(skill, rng) for _ in range(n // 2)] + [
        S.expert_composition(skill, rng) for _ in range(n // 4)
    ]


def _converged(model, tok, val: list[skills.Example], share: float):
    return lambda: T.token_accuracy(model, tok, val) >= share


def benchmark_rows(
    seed: int, held_in: int = 40, held_back: int = 20, per_pair: int = 8, ocean: str = DEFAULT_OCEAN
) -> list[dict]:
    """The demo benchmark (DESIGN §6): fresh payloads, never the training rows."""
    S = OCEANS[ocean]
    rng = random.Random(seed + 1000)
    rows: list[skills.Example] = []
    for skill in S.SKILLS.values():
        rows += [S.make_example(skill, rng, "seen") for _ in range(held_in)]
        rows += [S.make_example(skill, rng, "held-back") for _ in range(held_back)]
    pairs = S.compositions()
    if ocean == "domains":  # 56 ordered pairs of domains: 3 prompts each
        per_pair = 3
    for a, b in pairs:
        rows += [S.make_composition(a, b, rng) for _ in range(per_pair)]
    for a, b in getattr(S, "CHAINS", {}):
        rows += [S.chain(S.SKILLS[a], S.SKILLS[b], rng) for _ in range(20)]
    out = []
    for i, ex in enumerate(rows):
        split = "held-in" if ex.phrasing == "seen" else "held-out"
        domain = S.SKILLS[ex.skills[0]].domain if len(ex.skills) == 1 else ex.phrasing
        out.append(
            {
                "id": f"demo-{i:05d}",
                "prompt": ex.prompt,
                "answer": ex.answer,
                "task": ex.task,
                "split": split,
                "category": domain,
                "phrasing": ex.phrasing,
                "skills": list(ex.skills),
            }
        )
    return out


@dataclass
class Corpus:
    """A build's data, all from its seed: the texts (and so the tokenizer) do not depend on
    the budget, only the eval sets' sizes do."""

    base_train: list
    expert_train: dict
    eval_sets: dict
    val_sets: dict
    tok: object
    texts: list  # what the tokenizer was trained on (the shipped base's fingerprint covers them)


def _corpus(S, seed: int, budget: Budget) -> Corpus:
    rng = random.Random(seed)
    base_train = [S.make_example(s, rng) for s in S.BASE_SKILLS.values() for _ in range(2000)]
    if hasattr(S, "base_compositions"):  # the two-part format, with general operations in both parts
        base_train += [S.base_compositions(rng) for _ in range(4000)]
    expert_train = {n: _expert_examples(S, s, rng, 2000) for n, s in S.SKILLS.items()}
    eval_sets = {
        n: [S.make_example(s, rng) for _ in range(budget.eval_per_skill)] for n, s in S.SKILLS.items()
    }
    val_sets = {n: [S.make_example(s, rng) for _ in range(200)] for n, s in S.SKILLS.items()}
    texts = [f"{e.prompt}\n {e.answer}" for e in base_train + [e for v in expert_train.values() for e in v]]
    tok = T.train_tokenizer(texts)
    lessons = random.Random(f"lessons/{seed}")
    for n, s in S.SKILLS.items():
        expert_train[n] += _recombined_lessons(S, s, lessons, 2000)
    return Corpus(base_train, expert_train, eval_sets, val_sets, tok, texts)


def _train_base(tok, base_train, budget: Budget, seed: int, log):
    log(f"training base LM ({budget.base_steps} steps) ...")
    base = T.make_base(tok, seed=seed)
    torch.manual_seed(seed)
    T.fit(base, tok, base_train, steps=budget.base_steps, lr=budget.base_lr, seed=seed, desc="base LM")
    return base


def _shipped_fingerprint(corpus: Corpus, seed: int) -> str:
    """What a base trained on `corpus` at `seed` by the shipped base's recipe (the full
    domains budget's) is called (`shipped.fingerprint`)."""
    r = SHIPPED_RECIPE
    return shipped.fingerprint(corpus.texts, corpus.tok, seed, r.base_steps, r.base_lr)


def _base(ocean: str, budget: Budget, seed: int, retrain: bool, corpus: Corpus, log):
    """The shipped base where it was trained on exactly this corpus and tokenizer at this
    seed (fast builds too), unless `retrain`; else a base trained here on the budget's steps.
    Returns (model, "shipped" | "trained")."""
    if ocean == "domains" and not retrain:
        model = shipped.load(_shipped_fingerprint(corpus, seed))
        if model is not None:
            log(f"base LM: the shipped one ({shipped.DIR.name}/, `make demo-base` retrains it)")
            return model, "shipped"
    return _train_base(corpus.tok, corpus.base_train, budget, seed, log), "trained"


def ship_base(seed: int = 0) -> None:
    """Train the domains ocean's full-budget base at `seed` and write it as the shipped base."""
    budget = SHIPPED_RECIPE
    t0 = time.time()
    corpus = _corpus(domains, seed, budget)
    base = _train_base(corpus.tok, corpus.base_train, budget, seed, print)
    recipe = {"seed": seed, "steps": budget.base_steps, "lr": budget.base_lr}
    shipped.save(base, corpus.tok, _shipped_fingerprint(corpus, seed), recipe)
    print(f"wrote {shipped.DIR} ({time.time() - t0:.0f}s)")


def build_demo(
    registry: Registry,
    out_dir: str | Path,
    fast: bool = False,
    seed: int = 0,
    log=print,
    ocean: str = DEFAULT_OCEAN,
    retrain_base: bool = False,
) -> list[SkillResult]:
    S = OCEANS[ocean]
    budget = BUDGETS[ocean][fast]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()

    corpus = _corpus(S, seed, budget)
    tok, eval_sets = corpus.tok, corpus.eval_sets
    base, base_from = _base(ocean, budget, seed, retrain_base, corpus, log)
    base_s = time.time() - t0
    base.save_pretrained(out / "base")
    tok.save_pretrained(out / "base")

    results = []
    for i, (name, skill) in enumerate(S.SKILLS.items()):
        base_acc = T.exact_match(base, tok, eval_sets[name])
        base_tok = T.token_accuracy(base, tok, eval_sets[name])
        cfg = LoraConfig(task_type="CAUSAL_LM", **LORA[EXPERT_LORA[name]])
        torch.manual_seed(seed + 1 + i)
        model = get_peft_model(base, cfg)
        t1 = time.time()
        T.fit(
            model,
            tok,
            corpus.expert_train[name],
            steps=budget.expert_steps,
            lr=budget.expert_lr,
            seed=seed + 1 + i,
            desc=f"expert {name}",
            batch_size=budget.expert_batch,
            min_steps=budget.min_expert_steps,
            done=None
            if budget.converged is None
            else _converged(model, tok, corpus.val_sets[name], budget.converged),
        )
        train_s = time.time() - t1
        acc, acc_tok = (
            T.exact_match(model, tok, eval_sets[name]),
            T.token_accuracy(model, tok, eval_sets[name]),
        )
        model.save_pretrained(out / "experts" / name)
        base = model.unload()  # drop the LoRA layers, keep the untouched base weights
        results.append(
            SkillResult(name, skill.domain, EXPERT_LORA[name], base_acc, acc, base_tok, acc_tok, train_s)
        )
        log(
            f"  {name:10s} exact match: base {base_acc:6.1%} expert {acc:6.1%}   "
            f"answer tokens: base {base_tok:6.1%} expert {acc_tok:6.1%}   ({train_s:.0f}s)"
        )

    rows = benchmark_rows(seed, ocean=ocean)
    (out / "benchmark.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (out / "report.json").write_text(
        json.dumps(
            {
                "seed": seed,
                "ocean": ocean,
                "fast": fast,
                "budget": asdict(budget),
                "seconds": round(time.time() - t0, 1),
                "base_seconds": round(base_s, 1),  # corpus, tokenizer and base LM
                "base": base_from,  # "shipped" (composer/demo/shipped_base) or "trained" here
                "skills": [asdict(r) for r in results],
            },
            indent=2,
        )
    )
    _register(registry, out, corpus.expert_train, results, S, budget)
    return results


def _register(
    registry: Registry, out: Path, expert_train: dict, results: list[SkillResult], S, budget: Budget
) -> None:
    for rec in registry.list(kind="lora", base=BASE_NAME):
        registry.remove(rec.name)
    if any(r.name == BASE_NAME for r in registry.list(kind="base")):
        registry.remove(BASE_NAME)
    registry.register(
        out / "base",
        BASE_NAME,
        kind="base",
        description="Demo ocean base LM (Llama, ~0.7M params)",
        tags=["demo"],
        source=f"composer-demo:{BASE_NAME}",
    )
    from composer.api import Composer  # the routers' post-hoc fitting runs at registration

    composer = Composer(registry, base=BASE_NAME)
    for r in results:
        skill = S.SKILLS[r.skill]
        # completions follow the rendered prompt verbatim (OpenAI prompt/completion convention: leading space)
        examples = [{"prompt": e.prompt, "completion": " " + e.answer} for e in expert_train[r.skill][:64]]
        composer.register(
            out / "experts" / r.skill,
            r.skill,
            kind="lora",
            base=BASE_NAME,
            description=skill.description,
            tags=["demo", skill.domain],
            domains=[skill.domain],
            examples=examples,
            fit_options=None if budget.gate_steps is None else {"phatgoose": {"steps": budget.gate_steps}},
        )
        registry.set_scores(r.skill, {"demo/held-in": r.expert_acc})
    composer.fit("coe")
    composer.fit("bench_coe")
