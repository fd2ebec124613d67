"""Per-token routing views (composer.introspect): token x expert weights and their plot."""

from __future__ import annotations

import pytest

from composer.introspect import plot_tokens, token_weights

REPORT = {  # two modules, three tokens: what token_report gives for one prompt
    "tokens": ["<s>", " Na", " blick"],
    "modules": {
        "layers.0.q_proj": [
            [["a", 0.5], ["b", 0.5]],
            [["element", 1.0]],
            [["glossary", 0.75], ["element", 0.25]],
        ],
        "layers.1.q_proj": [[["a", 1.0]], [["element", 0.5], ["b", 0.5]], [["glossary", 1.0]]],
    },
}


def test_token_weights_average_each_expert_over_the_modules():
    experts, grid = token_weights(REPORT)
    assert experts == ["a", "b", "element", "glossary"]
    assert grid[0] == pytest.approx([0.75, 0.25, 0.0, 0.0])
    assert grid[1] == pytest.approx([0.0, 0.25, 0.75, 0.0])
    assert grid[2] == pytest.approx([0.0, 0.0, 0.125, 0.875])
    assert all(sum(row) == pytest.approx(1.0) for row in grid)


def test_plot_tokens_writes_a_png(tmp_path):
    path = plot_tokens(REPORT, tmp_path / "sub" / "tokens.png", "test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
