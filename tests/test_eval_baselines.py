"""The naive baselines an adapter is compared with. Run: pytest tests/test_eval_baselines.py"""

from __future__ import annotations

import pytest

from compression_layer.evaluate import baselines as b
from compression_layer.tokens import count_tokens

TEXT = (
    "Paris is the capital of France. It has about 2 million people. The Eiffel Tower is in Paris. "
    "Paris hosts many museums in France."
)


def test_token_budget_rounds_and_stays_within_the_input():
    assert b.token_budget(30, 0.5) == 15
    assert b.token_budget(30, 0.01) == 1
    assert b.token_budget(30, 2.0) == 30
    assert b.token_budget(0, 0.5) == 0


def test_identity_keeps_the_text():
    assert b.compress("identity", TEXT, count_tokens(TEXT), 0.3) == TEXT


def test_truncate_keeps_a_prefix_of_exactly_the_budget():
    out = b.truncate(TEXT, 10)
    assert TEXT.startswith(out)
    assert count_tokens(out) == 10
    assert b.truncate(TEXT, 1000) == TEXT


def test_truncate_drops_a_character_cut_in_half():
    text = "é" * 40  # multi-byte characters spread over byte-level tokens
    for budget in range(1, 8):
        out = b.truncate(text, budget)
        assert "\ufffd" not in out and text.startswith(out)


def test_split_sentences_on_end_marks_and_line_breaks():
    assert b.split_sentences("One. Two!\nthree\n\nFour? five") == [
        ("One.", " "), ("Two!", "\n"), ("three", "\n\n"), ("Four?", " "), ("five", ""),
    ]  # fmt: skip


def test_extractive_picks_salient_whole_sentences_in_order_within_budget():
    n = count_tokens(TEXT)
    budget = b.token_budget(n, 0.5)
    out = b.extractive(TEXT, budget)
    assert count_tokens(out) <= budget
    # the sentences sharing the text's frequent words (Paris, France) win, and keep their order
    assert out == "Paris is the capital of France. Paris hosts many museums in France."


def test_extractive_whole_text_when_it_fits_and_truncated_best_sentence_when_nothing_fits():
    assert b.extractive(TEXT, 1000) == TEXT
    out = b.extractive(TEXT, 3)
    assert count_tokens(out) == 3 and "Paris hosts many museums in France.".startswith(out)


def test_extractive_keeps_line_breaks_between_selected_lines():
    text = "alpha beta gamma\nunrelated words here\nalpha beta delta"
    out = b.extractive(text, count_tokens("alpha beta gamma\nalpha beta delta"))
    assert out == "alpha beta gamma\nalpha beta delta"


def test_unknown_baseline_is_an_error():
    with pytest.raises(ValueError, match="unknown baseline"):
        b.compress("oracle", TEXT, 10, 0.5)
