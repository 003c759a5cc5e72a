"""The Python API (Compressor): same outputs as the evaluate stage's generation, stats, adapter and
base-model choice, and the refusals (missing adapter, other base model, too-long input, --truncate).

Run: pytest tests/test_compress_api.py   (about half a minute)
"""

from __future__ import annotations

import json
import shutil

import pytest
from compress_support import TEXTS, adapter_copy, q8_adapter, q8_model  # noqa: F401
from eval_support import eval_adapter, eval_base_model, make_adapter, write_test_split  # noqa: F401

from compression_layer.compress import (
    AdapterNotFoundError,
    CompressError,
    Compressor,
    InputTooLongError,
    ModelMismatchError,
)
from compression_layer.evaluate import generate as g
from compression_layer.evaluate.testset import read_test_rows
from compression_layer.tokens import count_tokens

MAX_TOKENS = 16


@pytest.fixture(scope="module")
def compressor(eval_base_model, eval_adapter):
    return Compressor.load(eval_adapter, max_tokens=MAX_TOKENS)


def test_same_outputs_as_the_evaluate_stage_generation(tmp_path, eval_base_model, eval_adapter, compressor):
    write_test_split(tmp_path / "test.jsonl", 8)
    rows = read_test_rows(tmp_path / "test.jsonl")
    model, tokenizer, _ = g.load(str(eval_base_model), eval_adapter, "best")
    prompts = [g.prompt_tokens(tokenizer, row.input_text) for row in rows]
    expected = {i: gen.text for i, gen in g.generate(model, tokenizer, prompts, MAX_TOKENS, batch_size=4)}
    texts = [row.input_text for row in rows]

    assert compressor.compress_many(texts, batch_size=4) == [expected[i] for i in range(len(rows))]
    assert compressor.compress_many(texts, batch_size=3) == [expected[i] for i in range(len(rows))]
    assert [compressor.compress(t) for t in texts] == [expected[i] for i in range(len(rows))]
    assert len(set(expected.values())) > 1  # identical outputs for every row would prove nothing


def test_base_model_comes_from_the_adapter_config(eval_base_model, compressor):
    assert compressor.model_name == str(eval_base_model.resolve())
    assert compressor.max_seq_length == 2048  # make_adapter records none: mlx-lm's default


def test_relative_base_model_is_found_from_the_adapter_folder(tmp_path, eval_base_model, eval_adapter,
                                                              compressor, monkeypatch):  # fmt: skip
    project = tmp_path / "project"
    shutil.copytree(eval_base_model, project / "models/base/tiny")
    adapter = adapter_copy(eval_adapter, project / "models/runs/mlx/latest/adapter", model="models/base/tiny")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the relative model path does not exist from here
    c = Compressor.load(adapter, max_tokens=MAX_TOKENS)
    assert c.model_name == str((project / "models/base/tiny").resolve())
    assert c.compress(TEXTS[0]) == compressor.compress(TEXTS[0])
    # the same model named as training named it, or by another path, is not a mismatch
    assert Compressor.load(adapter, "models/base/tiny").model_name == c.model_name
    monkeypatch.chdir(project / "models")
    assert Compressor.load(adapter, "base/tiny").model_name == "base/tiny"


def test_stats_count_cl100k_tokens_of_input_and_output(compressor):
    results = compressor.compress_many(["  " + TEXTS[1] + "\n", TEXTS[5], "   "], stats=True)
    first, code, blank = results
    assert first.input_tokens == count_tokens(TEXTS[1].strip())  # surrounding whitespace is not compressed
    assert first.output_tokens == count_tokens(first.text)
    assert first.token_ratio == pytest.approx(first.output_tokens / first.input_tokens)
    assert first.text == compressor.compress(TEXTS[1]) and code.text == compressor.compress(TEXTS[5])
    assert first.finish_reason in ("stop", "length") and not first.truncated
    assert (blank.text, blank.input_tokens, blank.output_tokens) == ("", 0, 0)
    assert first.stats() == {"input_tokens": first.input_tokens, "output_tokens": first.output_tokens,
                             "token_ratio": first.token_ratio, "truncated": False,
                             "finish_reason": first.finish_reason, "model_tokens": first.model_tokens}  # fmt: skip
    assert 0 < first.model_tokens <= MAX_TOKENS and (first.model_tokens == MAX_TOKENS) == (first.finish_reason == "length")
    assert compressor.compress(TEXTS[1], stats=True) == first


def test_best_checkpoint_is_used_when_present_else_the_final_file(tmp_path, eval_base_model, eval_adapter, compressor):
    other = make_adapter(eval_base_model, tmp_path / "other", seed=7)
    run = adapter_copy(eval_adapter, tmp_path / "run")
    shutil.copy(other / "adapters.safetensors", run / g.BEST_ADAPTER_FILE)
    best = Compressor.load(run, max_tokens=MAX_TOKENS)
    last = Compressor.load(run, checkpoint="last", max_tokens=MAX_TOKENS)
    assert best.adapter.weights.name == g.BEST_ADAPTER_FILE and last.adapter.weights.name == "adapters.safetensors"
    texts = TEXTS[:4]
    assert best.compress_many(texts) == Compressor.load(other, max_tokens=MAX_TOKENS).compress_many(texts)
    assert last.compress_many(texts) == compressor.compress_many(texts)
    assert best.compress_many(texts) != last.compress_many(texts)


def test_missing_adapter_is_refused(tmp_path):
    with pytest.raises(AdapterNotFoundError, match="no adapter at .*nothing"):
        Compressor.load(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AdapterNotFoundError, match="not an adapter folder: adapter_config.json missing"):
        Compressor.load(tmp_path / "empty")
    (tmp_path / "noweights").mkdir()
    (tmp_path / "noweights/adapter_config.json").write_text("{}")
    with pytest.raises(AdapterNotFoundError, match="no adapters.safetensors"):
        Compressor.load(tmp_path / "noweights")


def test_adapter_of_another_base_model_is_refused(tmp_path, eval_base_model, eval_adapter, q8_model, q8_adapter):
    with pytest.raises(ModelMismatchError, match="trained on base model .* not '.*8bit'") as err:
        Compressor.load(eval_adapter, str(q8_model))
    assert "\n" not in str(err.value)
    with pytest.raises(ModelMismatchError, match="was trained on base model"):
        Compressor.load(q8_adapter, str(eval_base_model))
    with pytest.raises(CompressError, match="model directory not found"):
        Compressor.load(eval_adapter, str(tmp_path / "no-such-model"))
    # the 8-bit adapter on its own base model is fine
    assert Compressor.load(q8_adapter, max_tokens=4).compress(TEXTS[0]) is not None


def test_too_long_input_is_refused_or_truncated_to_fit(tmp_path, eval_adapter, compressor):
    overhead = len(g.prompt_tokens(compressor.tokenizer, ""))
    limit = overhead + 12
    adapter = adapter_copy(eval_adapter, tmp_path / "adapter", max_seq_length=limit)
    c = Compressor.load(adapter, max_tokens=MAX_TOKENS)
    short = "Rooms: 7."
    assert len(g.prompt_tokens(c.tokenizer, short)) <= limit
    with pytest.raises(InputTooLongError, match=f"input 2 of 3 is \\d+ tokens .* max_seq_length {limit}.*--truncate") as err:
        c.compress_many([short, TEXTS[0], short])
    assert err.value.index == 1 and err.value.tokens == len(g.prompt_tokens(c.tokenizer, TEXTS[0]))
    with pytest.raises(InputTooLongError, match="^input is"):
        c.compress(TEXTS[0])

    cut = c.compress_many([short, TEXTS[0]], truncate=True, stats=True)
    assert not cut[0].truncated and cut[1].truncated
    (prompt, head, truncated), = c.prompts([TEXTS[0]], truncate=True)
    assert truncated and TEXTS[0].startswith(head) and len(head) < len(TEXTS[0])
    assert limit - 3 <= len(prompt) <= limit  # as much text as fits
    assert cut[1].text == compressor.compress(head)  # the head is compressed as any text would be
    assert cut[1].input_tokens == count_tokens(head)
    assert Compressor.load(adapter, truncate=True, max_tokens=MAX_TOKENS).compress(TEXTS[0]) == cut[1].text


def test_bad_arguments_are_one_line_errors(compressor):
    with pytest.raises(CompressError, match="takes a list"):
        compressor.compress_many("one text")
    with pytest.raises(CompressError, match="batch_size must be >= 1"):
        compressor.compress_many(["x"], batch_size=0)
    with pytest.raises(CompressError, match="checkpoint must be one of best, last"):
        Compressor.load(checkpoint="newest")
    with pytest.raises(CompressError, match="no adapter and no model"):
        Compressor.load(None)


def test_adapter_trained_on_a_hub_id_finds_its_cached_snapshot(tmp_path, hub_layout_model, compressor):
    adapter = make_adapter(hub_layout_model, tmp_path / "adapter")  # adapter_config: model = the hub id
    assert json.loads((adapter / "adapter_config.json").read_text())["model"] == hub_layout_model
    c = Compressor.load(adapter, max_tokens=MAX_TOKENS)  # offline: the snapshot in the HF cache
    assert "snapshots" in c.model_name
    assert Compressor.load(adapter, hub_layout_model).model_name == c.model_name
    assert Compressor.load(adapter, c.model_name).model_name == c.model_name  # the snapshot folder itself
    with pytest.raises(ModelMismatchError, match=f"trained on base model '{hub_layout_model}'"):
        Compressor.load(adapter, "tiny-org/other-model")
