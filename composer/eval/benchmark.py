"""Benchmarks: JSONL files of examples, checked line by line.

Contract: `load_benchmark(source, registry=None, limit=None)` where `source` is "demo"
(the demo ocean's `benchmark.jsonl` under the registry home) or a JSONL path, or a list of
dicts (REST). Each line: `id`, `prompt`, either `answer` (generation, exact match after
whitespace normalisation) or `choices` + `label` (multiple choice, by log-likelihood),
`task`, `split` ("held-in" | "held-out"), optional `category`; other keys are kept in
`extra`. A bad line raises `BenchmarkError` naming the file and line. `limit` keeps N
examples *per split*, taken round-robin over its tasks, so a small run still covers both
splits and every task.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

SPLITS = ("held-in", "held-out")


class BenchmarkError(ValueError):
    """A benchmark that cannot be read; the message names the line."""


@dataclass(frozen=True)
class Example:
    id: str
    prompt: str
    task: str
    split: str
    answer: str | None = None
    choices: tuple[str, ...] = ()
    label: int | None = None
    category: str | None = None
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def kind(self) -> str:
        return "choice" if self.choices else "generate"


def normalise(text: str) -> str:
    return " ".join(str(text).split()).lower()


def _example(row, where: str) -> Example:
    if not isinstance(row, dict):
        raise BenchmarkError(f"{where}: expected a JSON object, got {type(row).__name__}")
    for key in ("id", "prompt", "task", "split"):
        if not isinstance(row.get(key), str) or not row[key].strip():
            raise BenchmarkError(f"{where}: '{key}' must be a non-empty string")
    if row["split"] not in SPLITS:
        raise BenchmarkError(f"{where}: split must be one of {', '.join(SPLITS)}, got {row['split']!r}")
    has_answer, has_choices = "answer" in row, "choices" in row
    if has_answer == has_choices:
        raise BenchmarkError(
            f"{where}: give either 'answer' (generation) or 'choices' + 'label' (multiple choice)"
        )
    if has_answer and not isinstance(row["answer"], str):
        raise BenchmarkError(f"{where}: 'answer' must be a string")
    choices, label = (), None
    if has_choices:
        choices, label = row["choices"], row.get("label")
        if (
            not isinstance(choices, list)
            or len(choices) < 2
            or not all(isinstance(c, str) and c for c in choices)
        ):
            raise BenchmarkError(f"{where}: 'choices' must be a list of at least two non-empty strings")
        if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < len(choices):
            raise BenchmarkError(
                f"{where}: 'label' must be the index of the right choice (0..{len(choices) - 1})"
            )
        choices = tuple(choices)
    category = row.get("category")
    if category is not None and not isinstance(category, str):
        raise BenchmarkError(f"{where}: 'category' must be a string")
    known = {"id", "prompt", "task", "split", "answer", "choices", "label", "category"}
    return Example(
        row["id"],
        row["prompt"],
        row["task"],
        row["split"],
        row.get("answer"),
        choices,
        label,
        category,
        {k: v for k, v in row.items() if k not in known},
    )


def _rows(source, registry) -> list[tuple[object, str]]:
    if isinstance(source, list):
        return [(row, f"examples[{i}]") for i, row in enumerate(source)]
    if source == "demo":
        from registry import DEFAULT_HOME

        home = registry.home if registry is not None else Path(DEFAULT_HOME).expanduser()
        source = Path(home) / "demo" / "benchmark.jsonl"
        if not source.is_file():
            raise BenchmarkError(
                "this registry has no demo benchmark (demo/benchmark.jsonl in its home): "
                "run `composer build-demo` first"
            )
    path = Path(source)
    if not path.is_file():
        raise BenchmarkError(f"benchmark file not found: {path}")
    out = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append((json.loads(line), f"{path.name}:{i}"))
        except json.JSONDecodeError as e:
            raise BenchmarkError(f"{path.name}:{i}: not valid JSON ({e.msg})") from None
    return out


def load_benchmark(source, registry=None, limit: int | None = None) -> list[Example]:
    examples, seen = [], {}
    for row, where in _rows(source, registry):
        ex = _example(row, where)
        if ex.id in seen:
            raise BenchmarkError(f"{where}: duplicate id {ex.id!r} (first at {seen[ex.id]})")
        seen[ex.id] = where
        examples.append(ex)
    if not examples:
        raise BenchmarkError("the benchmark has no examples")
    return examples if limit is None else _stratified(examples, limit)


def _stratified(examples: list[Example], limit: int) -> list[Example]:
    """The first `limit` examples of each split, taken round-robin over its tasks."""
    if limit < 1:
        raise BenchmarkError("limit must be >= 1")
    keep: set[str] = set()
    for split in SPLITS:
        by_task: dict[str, list[Example]] = {}
        for e in examples:
            if e.split == split:
                by_task.setdefault(e.task, []).append(e)
        queues = list(by_task.values())
        while queues and sum(e.split == split for e in examples if e.id in keep) < limit:
            keep.add(queues[0].pop(0).id)
            queues = [q for q in queues[1:] + queues[:1] if q]
    return [e for e in examples if e.id in keep]
