"""Generation, adapter choice and test loss of the evaluate stage, on a tiny model with a LoRA adapter.

Run: pytest tests/test_eval_generate.py   (a few seconds)
"""

from __future__ import annotations

import shutil

import pytest
from eval_support import CODE_TEXTS, NL_TEXTS, eval_adapter, eval_base_model, make_adapter, to_chat  # noqa: F401

from compression_layer.evaluate import generate as g

TEXTS = NL_TEXTS + CODE_TEXTS


@pytest.fixture(scope="module")
def loaded(eval_base_model, eval_adapter):
    model, tokenizer, weights = g.load(str(eval_base_model), eval_adapter, "best")
    return model, tokenizer


@pytest.fixture(scope="module")
def prompts(loaded):
    return [g.prompt_tokens(loaded[1], t) for t in TEXTS]


@pytest.fixture(scope="module")
def one_at_a_time(loaded, prompts):
    return dict(g.generate(*loaded, prompts, 24, batch_size=1))


@pytest.mark.parametrize("batch_size", [3, 8])
def test_batched_generation_gives_the_same_greedy_outputs_as_one_at_a_time(loaded, prompts, one_at_a_time, batch_size):
    batched = dict(g.generate(*loaded, prompts, 24, batch_size=batch_size))
    assert sorted(batched) == list(range(len(prompts)))
    for i in range(len(prompts)):
        assert batched[i] == one_at_a_time[i], f"row {i} differs"
    # a model that wrote the same thing for every prompt would make this comparison meaningless
    assert len({gen.text for gen in one_at_a_time.values()}) > 1


def test_rows_cut_at_the_limit_are_unfinished_with_exactly_max_tokens(one_at_a_time):
    for gen in one_at_a_time.values():
        assert gen.finish_reason in ("stop", "length")
        assert gen.unfinished == (gen.finish_reason == "length")
        if gen.unfinished:
            assert gen.tokens == 24


@pytest.mark.parametrize("batch_size", [1, 4])
def test_end_of_turn_token_stops_and_is_not_part_of_the_output(loaded, prompts, batch_size):
    from mlx_lm.generate import stream_generate

    model, tokenizer = loaded

    ids = [r.token for r in stream_generate(model, tokenizer, prompts[0], max_tokens=6)]
    saved = set(tokenizer.eos_token_ids)
    tokenizer.eos_token_ids = saved | {ids[2]}  # pretend the third token ends the turn
    try:
        out = dict(g.generate(model, tokenizer, prompts[:2], 6, batch_size=batch_size))[0]
    finally:
        tokenizer.eos_token_ids = saved
    stop_at = ids.index(ids[2])  # the first occurrence of that token is where generation stops
    assert out.finish_reason == "stop" and not out.unfinished
    assert out.tokens == stop_at
    assert out.text == g.clean_output(tokenizer.decode(ids[:stop_at]))


def test_prompt_is_the_training_prompt(loaded):
    from mlx_lm.tuner.datasets import ChatDataset

    _, tokenizer = loaded
    record = to_chat(TEXTS[0], "compressed")
    tokens, offset = ChatDataset([record], tokenizer, mask_prompt=True).process(record)
    assert g.prompt_tokens(tokenizer, TEXTS[0]) == tokens[:offset]


def test_clean_output_removes_think_tags_only():
    assert g.clean_output("<think>\n\n</think>\n\nA→B | c") == "A→B | c"
    assert g.clean_output("<THINK>plan</Think> x") == "plan x"  # tags go, their text stays
    assert g.clean_output("a  b\n\nc") == "a  b\n\nc"


def test_adapter_choice_best_then_last(eval_base_model, eval_adapter, tmp_path, loaded, prompts):
    run = tmp_path / "adapter"
    shutil.copytree(eval_adapter, run)
    assert g.adapter_weights(run, "best").name == "adapters.safetensors"  # no best file: the final one
    other = make_adapter(eval_base_model, tmp_path / "other", seed=7)
    shutil.copy(other / "adapters.safetensors", run / g.BEST_ADAPTER_FILE)
    assert g.adapter_weights(run, "best").name == g.BEST_ADAPTER_FILE
    assert g.adapter_weights(run, "last").name == "adapters.safetensors"

    def outputs(adapter_dir, which):
        model, tokenizer, _ = g.load(str(eval_base_model), adapter_dir, which)
        return [gen.text for _, gen in g.generate(model, tokenizer, prompts[:3], 12, batch_size=1)]

    best = outputs(run, "best")
    assert best == outputs(other, "last")  # the best file's weights were applied
    assert best != outputs(run, "last")


def test_missing_adapter_and_model_are_one_line_errors(eval_base_model, tmp_path):
    with pytest.raises(g.EvaluateError, match="no adapter at"):
        g.adapter_weights(tmp_path / "nothing")
    with pytest.raises(g.EvaluateError, match="cannot load model"):
        g.load(str(tmp_path / "no-model"), None)


def test_test_loss_scores_every_row_token_weighted(loaded):
    import math

    from mlx_lm.tuner.datasets import CacheDataset, ChatDataset
    from mlx_lm.tuner.trainer import evaluate

    model, tokenizer = loaded
    records = [to_chat(t, t[: len(t) // 3]) for t in TEXTS[:7]]
    whole = g.test_loss(model, tokenizer, records, batch_size=4, num_batches=-1, max_seq_length=2048)
    one_by_one = g.test_loss(model, tokenizer, records, batch_size=1, num_batches=-1, max_seq_length=2048)
    assert whole["rows"] == 7
    assert whole["loss"] == pytest.approx(one_by_one["loss"], rel=1e-4)
    assert whole["perplexity"] == pytest.approx(math.exp(whole["loss"]))
    # with a batch size that divides the rows, mlx-lm's own batching (which drops a partial batch) agrees
    records8 = [to_chat(t, t[: len(t) // 3]) for t in TEXTS]
    ours = g.test_loss(model, tokenizer, records8, batch_size=4, num_batches=-1, max_seq_length=2048)["loss"]
    dataset = CacheDataset(ChatDataset(records8, tokenizer, mask_prompt=True))
    assert ours == pytest.approx(evaluate(model, dataset, batch_size=4, num_batches=-1), rel=1e-4)
