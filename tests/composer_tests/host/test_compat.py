"""The compatibility matrix: for every architecture x adapter config (tests/helpers/archs.py), is
the adapter served exactly like PEFT, or refused at registration with a clear message?

Contract:
- A cell registers the tiny base of its architecture and two adapters of its config (seeds 0
  and 1) in a fresh `Registry`. A `RegistryError` makes the cell **refused** (its message's
  first line, at most `MESSAGE_CHARS` characters, temporary paths elided).
- Otherwise a `Host` loaded from the registered base path, with both registered adapters
  added (`record.path`), is compared with `PeftModel.from_pretrained(fresh base, adapter)` in
  eval mode, fp32: (a) one-hot logits of a right-padded batch of token-id prompts, max |diff|
  <= `TOL` on real tokens; (b) greedy generation of `NEW_TOKENS` tokens, token for token;
  (c) one host batch with rows [adapter 0, adapter 1, base], each row against PEFT with that
  adapter alone (the base row: the plain base model), <= `TOL`. All three pass: **exact**;
  anything else (an error at `add_adapter` or in a request, a difference): **broken**.
- Requirements are data: `REQUIRED_EXACT` (cells that must be exact) and `REQUIRED_REFUSED`
  (cells that must be refused, with a word the message must name). `test_cell[<arch>-<config>]`
  fails on a broken cell, on a requirement not met, and on an exact cell whose PEFT adapter
  does not change the logits (then the comparison would prove nothing).
- `test_readme_matrix` renders the matrix as Markdown (rows: architectures; columns: configs)
  and compares it with README.md's block between `BEGIN` and `END`; with
  COMPOSER_UPDATE_MATRIX=1 it rewrites the block instead of failing.
Models and adapters are built once per session; each cell is evaluated once (cached), whichever
test asks first.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from helpers.archs import ADAPTER_CONFIGS, ARCHS, EOS, PAD, lora_config, make_adapter, text, tiny_arch

from composer.host import Host
from registry import Registry, RegistryError

TOL = 1e-4
NEW_TOKENS = 8
MESSAGE_CHARS = 140
SEEDS = (0, 1)
EXACT_CONFIGS = (
    "attention",
    "all-linear",
    "rslora",
    "rank-alpha-pattern",
    "bias-lora-only",
    "bias-all",
    "dora",
)
REQUIRED_EXACT = {(arch, config) for arch in ARCHS for config in EXACT_CONFIGS}
# cell -> what its refusal message must name
REQUIRED_REFUSED = {(arch, "modules-to-save"): "modules_to_save" for arch in ARCHS}
CELLS = [(arch, config) for arch in ARCHS for config in ADAPTER_CONFIGS]

README = Path(__file__).resolve().parents[3] / "README.md"
BEGIN, END = "<!-- compat-matrix -->", "<!-- /compat-matrix -->"

# Token-id prompts of different lengths, right-padded in one batch: real tokens keep their
# positions, so each row can be compared with the prompt alone. Text prompts for generation
# have equal lengths, so the host (which left-pads) pads nothing.
ID_PROMPTS = [[5, 17, 42, 8, 60], [33, 9, 61], [12, 58, 4, 50]]  # ids < VOCAB
TEXT_PROMPTS = [text(4, seed) for seed in (1, 2)]


@dataclass
class Cell:
    status: str  # "exact" | "refused" | "broken"
    message: str = ""  # short, deterministic: the README table's
    detail: str = ""  # every failed check, with numbers: the test's failure message
    effect: float = 0.0  # max |PEFT - base| logits on real tokens (exact cells)

    def render(self) -> str:
        return self.status if self.status == "exact" else f"{self.status}: {self.message}"


class CheckFailed(Exception):
    def __init__(self, short: str, detail: str):
        super().__init__(detail)
        self.short = short


def first_line(e: BaseException, root: Path, with_type: bool = False, chars: int = MESSAGE_CHARS) -> str:
    lines = str(e).strip().splitlines()
    s = lines[0] if lines else ""
    s = re.sub(re.escape(str(root)) + r"[^\s'\"]*", "<tmp>", s)  # paths of this session's temp dir
    if with_type or not s:
        s = f"{type(e).__name__}: {s}".rstrip(": ")
    return s if len(s) <= chars else s[: chars - 1] + "…"


class Matrix:
    """Bases, adapters and PEFT references built on first use, and every cell's result."""

    def __init__(self, root: Path):
        self.root = root
        self.bases: dict[str, Path] = {}
        self.models: dict = {}
        self.adapters: dict[tuple, Path] = {}
        self.cells: dict[tuple[str, str], Cell] = {}

    def base(self, arch: str) -> Path:
        if arch not in self.bases:
            self.bases[arch] = tiny_arch(arch, self.root / "bases" / arch)
        return self.bases[arch]

    def model(self, arch: str):
        """The base as PEFT's references see it (fp32, eval); never modified (PEFT gets copies)."""
        from transformers import AutoModelForCausalLM

        if arch not in self.models:
            m = AutoModelForCausalLM.from_pretrained(self.base(arch), dtype=torch.float32)
            self.models[arch] = m.eval()
        return self.models[arch]

    def adapter(self, arch: str, config: str, seed: int) -> Path:
        key = (arch, config, seed)
        if key not in self.adapters:
            out = self.root / "adapters" / f"{arch}-{config}-{seed}"
            self.adapters[key] = make_adapter(self.base(arch), out, seed=seed, **lora_config(config, arch))
        return self.adapters[key]

    def peft(self, arch: str, adapter: Path):
        from peft import PeftModel

        fresh = copy.deepcopy(self.model(arch))  # bias="all"/"lora_only" load into the base itself
        return PeftModel.from_pretrained(fresh, adapter).eval()

    def cell(self, arch: str, config: str) -> Cell:
        if (arch, config) not in self.cells:
            self.cells[arch, config] = evaluate(self, arch, config)
        return self.cells[arch, config]


def register(m: Matrix, arch: str, config: str):
    reg = Registry(home=m.root / "homes" / f"{arch}-{config}")
    try:
        base = reg.register(m.base(arch), "base", kind="base")
        return base, [reg.register(m.adapter(arch, config, s), f"a{s}", base="base") for s in SEEDS]
    finally:
        reg.close()


def evaluate(m: Matrix, arch: str, config: str) -> Cell:
    try:
        base, adapters = register(m, arch, config)
    except RegistryError as e:
        full = first_line(e, m.root, chars=10_000)
        return Cell("refused", first_line(e, m.root), f"refused at registration: {full}")
    try:
        host = Host.load(base.path)
        for s, rec in zip(SEEDS, adapters):
            host.add_adapter(f"a{s}", rec.path)
    except Exception as e:  # noqa: BLE001 - any error after a registration that succeeded is a finding
        msg = first_line(e, m.root, with_type=True)
        return Cell("broken", f"load: {msg}", f"Host.load / add_adapter of a registered adapter: {msg}")
    refs = [m.peft(arch, m.adapter(arch, config, s)) for s in SEEDS]
    failures: list[CheckFailed] = []
    effect = 0.0
    for name, check in (
        ("(a) logits", check_logits),
        ("(b) greedy", check_greedy),
        ("(c) mixed", check_mixed),
    ):
        try:
            effect = check(host, refs, m.model(arch)) or effect
        except CheckFailed as e:
            failures.append(CheckFailed(f"{name}: {e.short}", f"{name}: {e}"))
        except Exception as e:  # noqa: BLE001
            msg = first_line(e, m.root, with_type=True)
            failures.append(CheckFailed(f"{name}: {msg}", f"{name}: raised {msg}"))
    if failures:
        return Cell("broken", failures[0].short, "; ".join(str(f) for f in failures))
    return Cell("exact", effect=effect)


def padded(prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, prompts))
    ids = torch.tensor([p + [PAD] * (width - len(p)) for p in prompts])
    mask = torch.tensor([[1] * len(p) + [0] * (width - len(p)) for p in prompts])
    return ids, mask


def check_logits(host: Host, refs, base) -> float:
    """(a) one-hot rows of adapter 0 against PEFT on the same batch; returns the adapter's effect."""
    ids, mask = padded(ID_PROMPTS)
    got = host.logits(ids, mask, [{"a0": 1.0}] * len(ID_PROMPTS))
    with torch.no_grad():
        ref = refs[0](input_ids=ids, attention_mask=mask).logits
        plain = base(input_ids=ids, attention_mask=mask).logits
    real = mask.bool()
    if got.shape != ref.shape:
        raise CheckFailed("logits shape", f"host logits {tuple(got.shape)}, PEFT {tuple(ref.shape)}")
    for b in range(len(ID_PROMPTS)):
        d = (got[b] - ref[b])[real[b]].abs().max().item()
        if not d <= TOL:
            raise CheckFailed(
                f"row {b} differs from PEFT", f"row {b} differs from PEFT by max |diff| {d:.3g} > {TOL}"
            )
    return (ref - plain)[real].abs().max().item()


def check_greedy(host: Host, refs, base) -> None:
    """(b) host.generate with adapter 0 against PEFT's greedy generate, prompt by prompt."""
    tok = host.tokenizer
    gens = host.generate(TEXT_PROMPTS, [{"a0": 1.0}] * len(TEXT_PROMPTS), max_new_tokens=NEW_TOKENS)
    for b, (prompt, g) in enumerate(zip(TEXT_PROMPTS, gens)):
        enc = tok(prompt, return_tensors="pt")
        with torch.no_grad():
            out = refs[0].generate(
                **enc, max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=PAD, eos_token_id=EOS
            )
        want = out[0, enc["input_ids"].shape[1] :].tolist()
        if g.token_ids != want:
            raise CheckFailed(
                f"prompt {b} tokens differ from PEFT",
                f"prompt {b} {prompt!r}: host generated {g.token_ids}, PEFT {want}",
            )


def check_mixed(host: Host, refs, base) -> None:
    """(c) rows [adapter 0, adapter 1, base] in one host batch, each against its model alone."""
    ids, mask = padded(ID_PROMPTS)
    got = host.logits(ids, mask, [{"a0": 1.0}, {"a1": 1.0}, {}])
    for b, (prompt, model, who) in enumerate(zip(ID_PROMPTS, [*refs, base], ["a0", "a1", "base"])):
        with torch.no_grad():
            alone = model(input_ids=torch.tensor([prompt])).logits[0]
        d = (got[b, : len(prompt)] - alone).abs().max().item()
        if not d <= TOL:
            raise CheckFailed(
                f"row {b} ({who}) differs from it alone",
                f"row {b} ({who}) differs from {who} alone in PEFT by max |diff| {d:.3g} > {TOL}",
            )


@pytest.fixture(scope="session")
def matrix(tmp_path_factory) -> Matrix:
    return Matrix(tmp_path_factory.mktemp("compat"))


@pytest.mark.parametrize(("arch", "config"), CELLS, ids=[f"{a}-{c}" for a, c in CELLS])
def test_cell(matrix, arch, config):
    cell = matrix.cell(arch, config)
    assert cell.status != "broken", f"{arch} x {config} registers but is not served like PEFT: {cell.detail}"
    if (arch, config) in REQUIRED_EXACT:
        assert cell.status == "exact", f"{arch} x {config} must be served exactly; {cell.detail}"
        assert cell.effect > 1e-2, f"the PEFT adapter changes the logits by {cell.effect:.3g} only"
    if (arch, config) in REQUIRED_REFUSED:
        word = REQUIRED_REFUSED[arch, config]
        assert cell.status == "refused", f"{arch} x {config} must be refused at registration, but is served"
        assert word in cell.message, f"refusal does not name {word}: {cell.message}"


def test_every_saved_tensor_matters(matrix):
    """The harness itself: the noise `make_adapter` adds to what an adapter saves beyond
    lora_A/lora_B (biases, DoRA magnitudes, modules_to_save copies) changes PEFT's logits, so a
    host that ignored those tensors would be caught."""
    from safetensors import safe_open

    ids, mask = padded(ID_PROMPTS)
    weak = []
    for arch, config in CELLS:
        src = matrix.adapter(arch, config, 0)
        with safe_open(str(src / "adapter_model.safetensors"), "pt") as f:
            keys = f.keys()
        extra = [k for k in keys if not re.search(r"\.lora_[AB]\.weight$", k)]
        if not extra:
            continue
        plain = matrix.root / "unperturbed" / f"{arch}-{config}"
        make_adapter(matrix.base(arch), plain, seed=0, perturb=False, **lora_config(config, arch))
        with torch.no_grad():
            full, part = (
                matrix.peft(arch, a)(input_ids=ids, attention_mask=mask).logits for a in (src, plain)
            )
        d = (full - part)[mask.bool()].abs().max().item()
        if not d > 1e-2:
            weak.append(f"{arch} x {config}: {d:.3g} ({len(extra)} tensors, e.g. {extra[0]})")
    assert not weak, f"saved tensors beyond lora_A/B that barely change PEFT's logits: {weak}"


def render(matrix: Matrix) -> str:
    configs = list(ADAPTER_CONFIGS)
    lines = ["| architecture | " + " | ".join(f"`{c}`" for c in configs) + " |"]
    lines.append("|---" * (len(configs) + 1) + "|")
    for arch in ARCHS:
        cells = [matrix.cell(arch, c).render().replace("|", "\\|") for c in configs]
        lines.append(f"| `{arch}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def test_readme_matrix(matrix):
    table = render(matrix)
    text = README.read_text()
    head, begin, rest = text.partition(BEGIN)
    _, end, tail = rest.partition(END)
    assert begin and end, f"README.md has no {BEGIN} ... {END} block"
    fresh = f"{head}{BEGIN}\n{table}\n{END}{tail}"
    if fresh == text:
        return
    if os.environ.get("COMPOSER_UPDATE_MATRIX") == "1":
        README.write_text(fresh)
        return
    pytest.fail(
        "README.md's compatibility matrix is out of date (COMPOSER_UPDATE_MATRIX=1 rewrites it); "
        f"the matrix now reads:\n{table}"
    )
