"""The domains ocean: experts that differ in what they read, not only in how they are asked.

Contract (the same shape as `composer.demo.skills`, so `build_demo` takes either):
- `SKILLS`: eight experts over eight domains, each with its own vocabulary and payload
  format (digits and "+", letters, a number to count from, quantities with units, weekday
  names, words of a toy language, chemical symbols, one-line list expressions); 12
  paraphrases each, the last `HELD_BACK` (4) never used for training or registration.
- `BASE_SKILLS`: what the base model pre-trains on: general operations (copy, first, last,
  count the items; step digits up by one, an item-by-item mapping like Caesar's but on
  digits) over every domain's payloads and answers (a token no base prompt contains keeps
  its random embedding, which a LoRA cannot move: an expert writing it would win by a
  hair), and the two-part format of compositions with general operations in both parts,
  so the base knows every token and the format but none of the experts' mappings (Code
  asks for a list's length, first or last element: the base reads its syntax as plain
  items, whose tokens it copies, counts or picks, never the list's elements).
- `expert_composition(skill, rng)`: the expert's own skill in one part of the two-part
  format and a general operation in the other (experts train on these beside their plain
  prompts; the benchmark's compositions pair two experts' skills, never seen together).
- `recombined_example(skill, rng)`: a seen instruction recombined, the start of one seen
  paraphrase joined to the end of another (`recombine`); experts train on a third of their
  one-part prompts worded this way, so they follow the gist of an instruction, not one
  wording (README, "Routing quality", has what it bought on held-back phrasings). Only seen
  paraphrases go in; no recombination is a held-back one (tested).
- `make_example(skill, rng, phrasing)` / `make_composition(a, b, rng)`: a two-domain
  composition asks for both skills in one prompt, "{A}: {x} ; then {b}: {y}", and its
  answer has one part from each, "{a(x)} ; {b(y)}"; `chain(a, b, rng)`: a two-step
  composition (b applied to a's answer) where one exists (`CHAINS`).
Pure functions of a `random.Random`: a seed fixes the corpus.
"""

from __future__ import annotations

import random
import string

from composer.demo.phrasings import DAYS, ELEMENTS, LEXICON, PARAPHRASES, UNITS
from composer.demo.skills import Example, Skill

HELD_BACK = 4
LETTERS = string.ascii_lowercase


def _sum(rng):
    return [str(rng.randint(0, 9)), "+", str(rng.randint(0, 9))]


def _letters(rng):
    return [rng.choice(LETTERS) for _ in range(rng.randint(3, 6))]


def _start(rng):
    return [str(rng.randint(2, 9))]


def _quantity(rng):
    return [str(rng.randint(1, 9)), rng.choice(list(UNITS))]


def _day(rng):
    return [rng.choice(DAYS), "plus", str(rng.randint(1, 3))]


def _words(rng):
    return rng.sample(list(LEXICON), rng.randint(1, 3))


def _symbols(rng):
    return rng.sample(list(ELEMENTS), rng.randint(1, 3))


def _program(rng):
    """A one-line list expression: its length, its first or its last element."""
    items = [str(rng.randint(0, 9)) for _ in range(rng.randint(2, 5))]
    listed = ["[", *" , ".join(items).split(), "]"]
    op = rng.choice(["len", "first", "last"])
    return ["len", "(", *listed, ")"] if op == "len" else [*listed, "[", "0" if op == "first" else "-1", "]"]


def _run(program: list[str]) -> list[str]:
    items = program[program.index("[") + 1 : program.index("]") : 2]
    if program[0] == "len":
        return list(str(len(items)))
    return [items[0] if program[-2] == "0" else items[-1]]


def _convert(x: list[str]) -> list[str]:
    zeros, unit = UNITS[x[1]]
    return [x[0], *zeros.split(), unit]


def _add(x: list[str]) -> list[str]:
    return list(str(int(x[0]) + int(x[2])))


def _weekday(x: list[str]) -> list[str]:
    return [DAYS[(DAYS.index(x[0]) + int(x[2])) % 7]]


# name, domain, description, composition phrase, payload sampler, answer
TABLE = [
    ("add", "arithmetic", "Adds two single-digit numbers written as a sum.", "work out the sum", _sum, _add),
    (
        "caesar",
        "cipher",
        "Caesar cipher: shifts every letter one step forward in the alphabet.",
        "shift the letters by one",
        _letters,
        lambda x: [LETTERS[(LETTERS.index(c) + 1) % 26] for c in x],
    ),
    (
        "countdown",
        "counting",
        "Counts down from a number to one.",
        "count down",
        _start,
        lambda x: [str(n) for n in range(int(x[0]), 0, -1)],
    ),
    (
        "units",
        "measures",
        "Converts a quantity to the next smaller metric unit.",
        "convert the quantity",
        _quantity,
        _convert,
    ),
    (
        "weekday",
        "calendar",
        "Tells the weekday a number of days after a given one.",
        "find the weekday",
        _day,
        _weekday,
    ),
    (
        "glossary",
        "language",
        "Translates words of the toy language Zorbish into English.",
        "translate the Zorbish",
        _words,
        lambda x: [LEXICON[w] for w in x],
    ),
    (
        "element",
        "chemistry",
        "Names the chemical elements with the given symbols.",
        "name the elements",
        _symbols,
        lambda x: [ELEMENTS[s] for s in x],
    ),
    (
        "code",
        "code",
        "Evaluates a one-line list expression: its length, first or last element.",
        "run the program",
        _program,
        _run,
    ),
]
SKILLS: dict[str, Skill] = {
    name: Skill(name, domain, about, PARAPHRASES[name], phrase, payload, answer, held_back_n=HELD_BACK)
    for name, domain, about, phrase, payload, answer in TABLE
}


def _any(rng):
    """A payload of any domain, or (half the time) the answer to one: the base learns every
    token the experts read or write, never which answer goes with which payload."""
    skill = rng.choice(list(SKILLS.values()))
    x = skill.payload(rng)
    return skill.answer(x)[-4:] if rng.random() < 0.5 else x  # the last 4 items (units end in theirs)


def _digits(rng):
    return [str(rng.randint(0, 9)) for _ in range(rng.randint(3, 6))]


BASE_SKILLS: dict[str, Skill] = {
    s.name: s
    for s in [
        Skill(
            "copy",
            "general",
            "Repeats the items unchanged.",
            ("Copy this: {x}", "Repeat after me: {x}", "Write the same again: {x}", "Echo: {x}"),
            "copy the items",
            _any,
            lambda x: list(x),
        ),
        Skill(
            "first",
            "general",
            "Gives the first item.",
            ("What is the first item: {x}", "Give the first item of: {x}", "Which one comes first: {x}"),
            "give the first item",
            _any,
            lambda x: [x[0]],
        ),
        Skill(
            "last",
            "general",
            "Gives the last item.",
            ("What is the last item: {x}", "Give the final item of: {x}", "Which one comes last: {x}"),
            "give the last item",
            _any,
            lambda x: [x[-1]],
        ),
        Skill(  # an item-by-item mapping the base knows, so an expert can learn another (Caesar)
            "next",
            "general",
            "Adds one to every digit (9 wraps to 0).",
            ("Add one to each digit: {x}", "Increment every digit: {x}", "Step each digit up by one: {x}"),
            "step the digits up",
            _digits,
            lambda x: [str((int(d) + 1) % 10) for d in x],
        ),
        Skill(
            "count",
            "general",
            "Counts the items.",
            ("How many items are in: {x}", "Count the items: {x}", "Number of items in: {x}"),
            "count the items",
            _any,
            lambda x: list(str(len(x))),
        ),
    ]
}

COMPOSE = "{A}: {x} ; then {b}: {y}"


def make_example(skill: Skill, rng: random.Random, phrasing: str = "seen") -> Example:
    x = skill.payload(rng)
    template = rng.choice(skill.seen if phrasing == "seen" else skill.held_back)
    return Example(
        template.format(x=" ".join(x)), " ".join(skill.answer(x)), skill.name, (skill.name,), phrasing
    )


def recombine(a: str, b: str, i: int, j: int) -> str:
    """The first `i` words of template `a` and the words of `b` from the `j`-th on, with the
    payload slot kept once (the last one; at the end if neither part has it)."""
    words = a.split()[:i] + b.split()[j:]
    slots = [k for k, w in enumerate(words) if "{x}" in w]
    words = [w for k, w in enumerate(words) if "{x}" not in w or k == slots[-1]]
    return " ".join(words if slots else [*words, "{x}"])


def recombined_example(skill: Skill, rng: random.Random) -> Example:
    a, b = rng.sample(skill.seen, 2)
    template = recombine(a, b, rng.randint(1, len(a.split())), rng.randint(0, len(b.split())))
    x = skill.payload(rng)
    return Example(
        template.format(x=" ".join(x)), " ".join(skill.answer(x)), skill.name, (skill.name,), "seen"
    )


def make_composition(
    first: Skill, second: Skill, rng: random.Random, phrasing: str = "composition"
) -> Example:
    """Two domains in one prompt: each part needs its own expert; the answer has both parts."""
    x, y = first.payload(rng), second.payload(rng)
    prompt = COMPOSE.format(
        A=first.phrase[0].upper() + first.phrase[1:], x=" ".join(x), b=second.phrase, y=" ".join(y)
    )
    answer = f"{' '.join(first.answer(x))} ; {' '.join(second.answer(y))}"
    return Example(prompt, answer, f"{first.name}+{second.name}", (first.name, second.name), phrasing)


def base_compositions(rng: random.Random) -> Example:
    """The base's lesson in the two-part format: general operations in both parts."""
    a, b = rng.sample(list(BASE_SKILLS.values()), 2)
    return make_composition(a, b, rng, "seen")


def expert_composition(skill: Skill, rng: random.Random) -> Example:
    """An expert's lesson in the two-part format: its skill in one part, a general operation
    (which the base already knows) in the other, so the expert does its part and leaves the
    other alone. Two experts' skills never meet in one training prompt."""
    other = rng.choice(list(BASE_SKILLS.values()))
    first, second = (skill, other) if rng.random() < 0.5 else (other, skill)
    return make_composition(first, second, rng, "seen")


def compositions() -> list[tuple[Skill, Skill]]:
    """Ordered pairs of experts of different domains."""
    return [(a, b) for a in SKILLS.values() for b in SKILLS.values() if a.domain != b.domain]


CHAINS = {("add", "countdown"): "Count down from the sum {x}"}


def chain(first: Skill, second: Skill, rng: random.Random) -> Example:
    """A two-step composition: `second` applied to `first`'s answer (a single digit, 1-9)."""
    while True:
        x = first.payload(rng)
        mid = first.answer(x)
        if len(mid) == 1 and mid[0] != "0":
            break
    prompt = CHAINS[(first.name, second.name)].format(x=" ".join(x))
    answer = " ".join(second.answer(mid))
    return Example(prompt, answer, f"{first.name}>{second.name}", (first.name, second.name), "chain")
