"""Each evaluation metric on hand-made rows with known answers (no model). Run: pytest tests/test_eval_metrics.py"""

from __future__ import annotations

import pytest

from compression_layer.evaluate import metrics as m


def test_percentile_matches_linear_interpolation():
    values = [0.1, 0.2, 0.3, 0.4, 1.0]
    assert m.percentile(values, 50) == pytest.approx(0.3)
    assert m.percentile(values, 90) == pytest.approx(0.4 + 0.6 * 0.6)  # rank 3.6 of 0..4
    assert m.percentile([7.0], 90) == 7.0


def test_ratio_stats_mean_median_p90_and_pooled():
    stats = m.ratio_stats([10, 20, 30, 40], [5, 5, 30, 10])  # ratios 0.5, 0.25, 1.0, 0.25
    assert stats["mean"] == pytest.approx(0.5)
    assert stats["median"] == pytest.approx(0.375)
    assert stats["p90"] == pytest.approx(0.85)  # rank 2.7 between 0.5 and 1.0
    assert stats["pooled"] == pytest.approx(50 / 100)
    # an input without tokens counts as ratio 1.0, as the data rules define it
    assert m.ratio_stats([0], [3])["mean"] == 1.0
    assert m.ratio_stats([], [])["pooled"] is None


def test_numbers_are_normalised_and_not_read_inside_names():
    assert m.numbers("In 2023, 1,000 users paid $3.50; a 10km run on x86 with utf8") == {"2023", "1000", "3.50", "10"}
    assert m.numbers("no digits here") == set()


def test_code_identifiers_and_whole_word_match():
    code = "def load_model(path):\n    cfg = json.loads(path.read_text())\n    return Model(cfg, maxTokens=5)\nclass Foo: pass"
    assert m.code_identifiers(code) == {"load_model", "loads", "read_text", "Model", "maxTokens", "Foo"}
    assert m.contains_name("fn load_model(p) -> Model", "load_model")
    assert not m.contains_name("fn load_models(p)", "load_model")


def test_chrf_known_values():
    assert m.chrf("same text", "same text") == pytest.approx(100.0)
    assert m.chrf("xyz", "abc") == pytest.approx(0.0)
    # hyp "ab", ref "abc": 1-grams P=1 R=2/3, 2-grams P=1 R=1/2 (higher orders absent in hyp) ->
    # mean P=1, mean R=7/12, F2 = 5PR/(4P+R) = 35/55
    assert m.chrf("ab", "abc") == pytest.approx(100 * 35 / 55)
    # whitespace is ignored, as in chrF's reference implementation
    assert m.chrf("a b c", "abc") == pytest.approx(100.0)
    assert m.corpus_chrf(["ab", "same"], ["abc", "same"]) < 100
    assert m.corpus_chrf([], []) is None


def test_repeated_lines():
    assert m.has_repeated_lines("name: Ann\nage: 3\nname: Ann")
    assert not m.has_repeated_lines("}\n}\nreturn x")  # short lines such as a brace do not count
    assert not m.has_repeated_lines("one line")
    # a line the input itself repeats is not a loop, unless the output repeats it more often
    code = "if a:\n    return None\nif b:\n    return None"
    assert not m.has_repeated_lines(code, code)
    assert m.has_repeated_lines(code + "\n    return None", code)


def test_check_row_code_counts_numbers_identifiers_and_degenerate_flags():
    code = "def add_tax(price):\n    return price * 1.2 + 5\n"
    row = m.check_row(code, "add_tax: price*1.2", "add_tax(p)=p*1.2+5", "code", 20, 8, False)
    assert (row["numbers_total"], row["numbers_kept"]) == (2, 1)
    assert (row["identifiers_total"], row["identifiers_kept"]) == (1, 1)
    assert row["negation_kept"] is None
    assert not any(row[k] for k in m.DEGENERATE)
    bad = m.check_row(code, "", "x", "code", 20, 0, True)
    assert bad["empty"] and bad["unfinished"] and not bad["longer_than_input"]
    assert m.check_row(code, "a b", "x", "code", 2, 3, False)["longer_than_input"]


def test_check_row_negation_on_nl_rows_uses_the_sanitize_detectors():
    text = "Please do not book the large room."
    assert m.check_row(text, "¬book large room", "x", "nl", 9, 4, False)["negation_kept"] is True
    assert m.check_row(text, "!book large room", "x", "nl", 9, 4, False)["negation_kept"] is True
    assert m.check_row(text, "book large room", "x", "nl", 9, 3, False)["negation_kept"] is False
    # no negation in the input: the check does not apply
    assert m.check_row("Book the room.", "book room", "x", "nl", 4, 2, False)["negation_kept"] is None
    nl = m.check_row(text, "book", "x", "nl", 9, 1, False)
    assert nl["identifiers_total"] is None and nl["identifiers_kept"] is None


def test_summarize_pools_shares_and_counts_degenerate_rows():
    def row(domain, inp, out, nums, idents, neg, text, **flags):
        return {
            "domain": domain, "input_tokens": inp, "output_tokens": out, "numbers_total": nums[0],
            "numbers_kept": nums[1], "identifiers_total": idents[0] if idents else None,
            "identifiers_kept": idents[1] if idents else None, "negation_kept": neg,
            "generated_output": text, "expected_output": text,
            **{k: flags.get(k, False) for k in m.DEGENERATE},
        }  # fmt: skip

    rows = [
        row("nl", 10, 5, (3, 3), None, True, "a"),
        row("nl", 10, 2, (1, 0), None, False, "b", empty=True),
        row("nl", 10, 4, (0, 0), None, None, "c"),
        row("code", 20, 9, (0, 0), (4, 3), None, "d", unfinished=True, repeated_lines=True),
    ]
    s = m.summarize(rows)
    assert s["rows"] == 4
    assert s["token_ratio"]["pooled"] == pytest.approx(20 / 50)
    assert s["numbers_kept"] == pytest.approx(3 / 4)
    assert s["identifiers_kept"] == pytest.approx(3 / 4)
    assert s["negation_kept"] == pytest.approx(1 / 2)
    assert s["chrf"] == pytest.approx(100.0)
    assert s["degenerate"] == {"empty": 1, "longer_than_input": 0, "repeated_lines": 1, "unfinished": 1, "any": 2}
    per_domain = m.by_domain(rows)
    assert list(per_domain) == ["code", "nl"]
    assert per_domain["code"]["identifiers_kept"] == pytest.approx(3 / 4)
    assert per_domain["code"]["negation_kept"] is None
    assert per_domain["nl"]["token_ratio"]["mean"] == pytest.approx((0.5 + 0.2 + 0.4) / 3)
