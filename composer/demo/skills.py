"""The demo ocean's synthetic skills: prompts, paraphrases and exact answers.

Contract:
- `SKILLS` maps a skill name (also its expert's name) to a `Skill`: a domain, a
  description, >= 5 natural-language paraphrases (the last `HELD_BACK` of them are never
  used for training or registration), a composition phrase, a payload sampler and the
  answer function.
- `BASE_SKILLS` are what the base model is pre-trained on; the expert skills are not in
  that mix, so each expert has something to add.
- Everything is a pure function of a `random.Random`, so a seed fixes the corpus.
Payloads are space-separated symbols ("c a t", "7 5") so one symbol is one token.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from dataclasses import dataclass

HELD_BACK = 2  # paraphrases per skill kept back from training and registration
LETTERS = string.ascii_lowercase


@dataclass(frozen=True)
class Skill:
    name: str
    domain: str
    description: str
    paraphrases: tuple[str, ...]  # each contains "{x}" where the payload goes
    phrase: str  # verb phrase used in two-skill compositions ("reverse the letters")
    payload: Callable[[random.Random], list[str]]
    answer: Callable[[list[str]], list[str]]
    composable: bool = False  # letters in, letters out: can be chained
    held_back_n: int = HELD_BACK  # the last paraphrases, kept back

    @property
    def seen(self) -> tuple[str, ...]:
        return self.paraphrases[: -self.held_back_n]

    @property
    def held_back(self) -> tuple[str, ...]:
        return self.paraphrases[-self.held_back_n :]


def _letters(rng: random.Random, lo: int = 3, hi: int = 6) -> list[str]:
    return [rng.choice(LETTERS) for _ in range(rng.randint(lo, hi))]


def _mixed_case(rng: random.Random) -> list[str]:
    x = _letters(rng)
    return [c.upper() for c in x] if rng.random() < 0.5 else x


def _digits(rng: random.Random, lo: int = 3, hi: int = 6) -> list[str]:
    return [str(rng.randint(0, 9)) for _ in range(rng.randint(lo, hi))]


def _pair(rng: random.Random) -> list[str]:
    return [str(rng.randint(0, 9)), str(rng.randint(0, 9))]


def _shift(c: str, k: int) -> str:
    return LETTERS[(LETTERS.index(c) + k) % 26]


def _number(n: int) -> list[str]:
    return list(str(n))


SKILLS: dict[str, Skill] = {
    s.name: s
    for s in [
        Skill(
            "reverse",
            "text",
            "Reverses the order of a sequence of letters.",
            (
                "Reverse the letters: {x}",
                "Write these letters backwards: {x}",
                "Put the letters in reverse order: {x}",
                "Flip the order of the letters: {x}",
                "Read the letters from right to left: {x}",
            ),
            "reverse the letters",
            _letters,
            lambda x: x[::-1],
            composable=True,
        ),
        Skill(
            "uppercase",
            "text",
            "Rewrites lowercase letters as capital letters.",
            (
                "Make these letters uppercase: {x}",
                "Capitalize every letter: {x}",
                "Write the letters in capitals: {x}",
                "Convert the letters to upper case: {x}",
                "Turn each letter into a capital: {x}",
            ),
            "capitalize every letter",
            _letters,
            lambda x: [c.upper() for c in x],
            composable=True,
        ),
        Skill(
            "caesar",
            "cipher",
            "Caesar cipher: shifts every letter one step forward in the alphabet.",
            (
                "Shift each letter forward by one: {x}",
                "Apply a Caesar shift of one: {x}",
                "Encode with the Caesar cipher, shift one: {x}",
                "Move every letter to the next one in the alphabet: {x}",
                "Advance each letter by one position in the alphabet: {x}",
            ),
            "shift each letter forward by one",
            _letters,
            lambda x: [_shift(c, 1) for c in x],
            composable=True,
        ),
        Skill(
            "atbash",
            "cipher",
            "Atbash cipher: mirrors the alphabet, a becomes z and b becomes y.",
            (
                "Encode with the Atbash cipher: {x}",
                "Mirror each letter in the alphabet: {x}",
                "Swap every letter for its Atbash partner: {x}",
                "Apply the mirror alphabet cipher to: {x}",
                "Map a to z, b to y and so on for: {x}",
            ),
            "apply the Atbash cipher",
            _letters,
            lambda x: [LETTERS[25 - LETTERS.index(c)] for c in x],
            composable=True,
        ),
        Skill(
            "add",
            "arithmetic",
            "Adds two single-digit numbers.",
            (
                "Add the two numbers: {x}",
                "What is the sum of {x}",
                "Compute the total of these numbers: {x}",
                "Sum up the pair: {x}",
                "Tell me what these two numbers add up to: {x}",
            ),
            "add the numbers",
            _pair,
            lambda x: _number(int(x[0]) + int(x[1])),
        ),
        Skill(
            "max",
            "arithmetic",
            "Finds the largest digit in a list.",
            (
                "Find the largest digit: {x}",
                "Which digit is the biggest: {x}",
                "Give the maximum of these digits: {x}",
                "Pick the highest number in the list: {x}",
                "What is the greatest value among: {x}",
            ),
            "find the largest digit",
            _digits,
            lambda x: [max(x)],
        ),
        Skill(
            "length",
            "counting",
            "Counts how many letters a sequence has.",
            (
                "Count the letters: {x}",
                "How many letters are there in: {x}",
                "Tell me the length of this sequence: {x}",
                "What is the number of letters in: {x}",
                "Give the letter count of: {x}",
            ),
            "count the letters",
            _letters,
            lambda x: _number(len(x)),
        ),
        Skill(
            "countdown",
            "counting",
            "Counts down from a number to one.",
            (
                "Count down from {x}",
                "Start at {x} and count down to one",
                "List the numbers from {x} down to 1",
                "Give a countdown starting at {x}",
                "Write the numbers backwards from {x} to one",
            ),
            "count down",
            lambda r: [str(r.randint(1, 9))],
            lambda x: [str(n) for n in range(int(x[0]), 0, -1)],
        ),
    ]
}

# Pre-training mix for the base model: general manipulation of the same symbols, in the
# same prompt format, but none of the expert skills.
BASE_SKILLS: dict[str, Skill] = {
    s.name: s
    for s in [
        Skill(
            "copy",
            "general",
            "Repeats the letters unchanged.",
            ("Copy the letters: {x}", "Repeat after me: {x}", "Write the same letters again: {x}"),
            "copy the letters",
            _mixed_case,
            lambda x: list(x),
        ),
        Skill(
            "copy-digits",
            "general",
            "Repeats the digits unchanged.",
            ("Copy the digits: {x}", "Repeat these numbers: {x}", "Write the same digits again: {x}"),
            "copy the digits",
            _digits,
            lambda x: list(x),
        ),
        Skill(
            "reverse-digits",
            "general",
            "Reverses a list of digits.",
            (
                "Reverse the digits: {x}",
                "Write these digits backwards: {x}",
                "Put the numbers in reverse order: {x}",
            ),
            "reverse the digits",
            _digits,
            lambda x: x[::-1],
        ),
        Skill(
            "increment",
            "general",
            "Adds one to every digit, nine wraps to zero.",
            (
                "Add one to each digit: {x}",
                "Increase every digit by one: {x}",
                "Bump each number up by one: {x}",
            ),
            "add one to each digit",
            _digits,
            lambda x: [str((int(c) + 1) % 10) for c in x],
        ),
        Skill(
            "first",
            "general",
            "Gives the first symbol.",
            ("What is the first symbol: {x}", "Give the first item of: {x}", "Which one comes first: {x}"),
            "give the first symbol",
            lambda r: r.choice([_mixed_case, _digits])(r),
            lambda x: [x[0]],
        ),
        Skill(
            "last",
            "general",
            "Gives the last symbol.",
            ("What is the last symbol: {x}", "Give the final item of: {x}", "Which one comes last: {x}"),
            "give the last symbol",
            lambda r: r.choice([_mixed_case, _digits])(r),
            lambda x: [x[-1]],
        ),
    ]
}


@dataclass(frozen=True)
class Example:
    prompt: str
    answer: str
    task: str  # skill name, or "a+b" for a composition
    skills: tuple[str, ...]
    phrasing: str  # "seen" | "held-back" | "composition"


def make_example(skill: Skill, rng: random.Random, phrasing: str = "seen") -> Example:
    x = skill.payload(rng)
    template = rng.choice(skill.seen if phrasing == "seen" else skill.held_back)
    return Example(
        template.format(x=" ".join(x)), " ".join(skill.answer(x)), skill.name, (skill.name,), phrasing
    )


COMPOSE_TEMPLATES = ("First {a}, then {b}: {x}", "{A} and after that {b}: {x}")


def make_composition(first: Skill, second: Skill, rng: random.Random) -> Example:
    x = first.payload(rng)
    t = rng.choice(COMPOSE_TEMPLATES)
    prompt = t.format(a=first.phrase, b=second.phrase, A=first.phrase.capitalize(), x=" ".join(x))
    answer = " ".join(second.answer(first.answer(x)))
    return Example(prompt, answer, f"{first.name}+{second.name}", (first.name, second.name), "composition")


def compositions() -> list[tuple[Skill, Skill]]:
    """Ordered pairs of distinct letter-to-letter skills (uppercase only last: others need lowercase)."""
    comp = [s for s in SKILLS.values() if s.composable]
    return [(a, b) for a in comp for b in comp if a is not b and a.name != "uppercase"]
