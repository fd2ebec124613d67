"""What the token routers' fitters read from the model: examples as token rows, and each
adapted module's input over them.

Contract:
- `own_examples(record)`: an expert's registered examples with a prompt, or its description
  as one prompt-only example when it has none.
- `example_rows(host, examples)` -> [(input ids, labels)] per example: the rendered prompt
  (`host.encode`, the chat form requests get), then the completion and eos; labels -100 on
  the prompt. A prompt-only example is scored on its own tokens after the first.
- `right_padded(rows, pad)`: rows as one batch, {input_ids, attention_mask, labels},
  padded on the right (labels -100 there).
- `layer_norm(t)`: layer norm without affine over the last dimension (mean-centred, unit
  variance): how PHATGOOSE standardises tokens and gate vectors.
- `mean_inputs(host, lora, examples, with_expert=False)` -> {module: c} for every module
  `lora` adapts that the forward reaches: the mean over every token of the module's input,
  standardised per token, with `lora` installed on `host` at weight 0 (the base's hidden
  states) or 1 (`with_expert`), `batch` examples per forward (right-padded, pads left out);
  the expert is removed afterwards and no parameter changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def own_examples(record) -> list[dict]:
    examples = [ex for ex in record.examples if ex.get("prompt")]
    return examples or [{"prompt": record.description or record.name, "completion": None}]


def example_rows(host, examples: Sequence[dict]) -> list[tuple[list[int], list[int]]]:
    tok = host.tokenizer
    rows = []
    for ex in examples:
        p = host.encode([ex["prompt"]])["input_ids"][0].tolist()
        if ex.get("completion"):
            c = tok(ex["completion"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            rows.append((p + c, [-100] * len(p) + c))
        else:
            rows.append((p, [-100] + p[1:]))
    return rows


def right_padded(rows, pad: int) -> dict[str, torch.Tensor]:
    n = max(len(ids) for ids, _ in rows)
    ids = torch.tensor([i + [pad] * (n - len(i)) for i, _ in rows])
    lab = torch.tensor([la + [-100] * (n - len(la)) for _, la in rows])
    mask = torch.tensor([[1] * len(i) + [0] * (n - len(i)) for i, _ in rows])
    return {"input_ids": ids, "attention_mask": mask, "labels": lab}


def layer_norm(t: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(t, t.shape[-1:])


class Recorder:
    """A routing (see composer.host.routing) that sums, per module of `modules`, the inputs of
    the real tokens (`mask`, flattened like the host's [rows·positions, d] inputs), each
    standardised, and gives the expert at `slot` weight 1 there (no slot: weight 0)."""

    def __init__(self, modules, slot: int | None = None):
        self.modules, self.slot, self.sums, self.tokens = set(modules), slot, {}, {}
        self.mask: torch.Tensor | None = None

    def per_row(self):
        return None

    def assign(self, layer, x: torch.Tensor):
        if layer.path not in self.modules:
            return None
        t = layer_norm(x.reshape(-1, x.shape[-1]).float())[self.mask]
        self.sums[layer.path] = self.sums.get(layer.path, 0) + t.sum(0)
        self.tokens[layer.path] = self.tokens.get(layer.path, 0) + len(t)
        return (
            None if self.slot is None else (self.slot, x.new_ones(x.shape[:-1] + (1,), dtype=torch.float32))
        )


@torch.no_grad()
def mean_inputs(
    host,
    lora,
    examples: Sequence[dict],
    with_expert: bool = False,
    progress=lambda it, **_: it,
    batch: int = 16,
) -> dict[str, torch.Tensor]:
    name = "__mean-inputs__"
    slot = host.add_adapter(name, lora)
    rec = Recorder(lora.modules, slot if with_expert else None)
    rows = example_rows(host, examples)
    try:
        with host.routed(rec):
            for i in progress(range(0, len(rows), batch), desc="hidden states"):
                # right-padded: a causal model's real tokens never see the pads
                b = right_padded(rows[i : i + batch], host.tokenizer.pad_token_id)
                ids, mask = b["input_ids"].to(host.device), b["attention_mask"].to(host.device)
                rec.mask = mask.reshape(-1).bool()
                host.model(input_ids=ids, attention_mask=mask)
    finally:
        host.remove_adapter(name)
    return {m: (s / rec.tokens[m]).cpu() for m, s in rec.sums.items()}
