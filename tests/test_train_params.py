"""Every training key of params.yaml reaches the trainer: LoRA layers, optimizer, schedule, batches, cadence.

    .venv/bin/python -m pytest -q tests/test_train_params.py

Each case trains the tiny model for a few iterations and inspects what was built or what happened.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import pytest
from mlx_lm.tuner.callbacks import TrainingCallback
from mlx_lm.tuner.dora import DoRALinear
from mlx_lm.tuner.lora import LoRALinear
from mlx_lm.utils import load
from train_support import make_data, quick_train, write_rows, chat_rows

LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("params_data"))


def modules(layer: nn.Module) -> dict[str, nn.Module]:
    return dict(layer.named_modules())


def test_lora_shape_keys(tiny_model_path, tmp_path, data):
    result = quick_train(tiny_model_path, tmp_path, data, lora_rank=4, lora_alpha=10.0, lora_dropout=0.25,
                         lora_layers=3, lora_keys=["self_attn.q_proj", "mlp.down_proj"])
    layers = result.model.layers
    assert not any(isinstance(m, LoRALinear) for m in modules(layers[0]).values())  # only the last 3
    for layer in layers[1:]:
        mods = modules(layer)
        for key in LINEARS:
            wanted = key in ("self_attn.q_proj", "mlp.down_proj")
            assert isinstance(mods[key], LoRALinear) == wanted, key
        q = mods["self_attn.q_proj"]
        assert q.lora_a.shape[1] == 4 and q.lora_b.shape[0] == 4  # rank
        assert q.scale == pytest.approx(2.5)  # alpha / rank
        assert 1 - q.dropout._p_1 == pytest.approx(0.25)  # nn.Dropout keeps 1 - p
    config = json.loads((tmp_path / "run/adapter/adapter_config.json").read_text())
    assert config["num_layers"] == 3 and config["fine_tune_type"] == "lora"
    assert config["lora_parameters"] == {"rank": 4, "scale": 2.5, "dropout": 0.25,
                                         "keys": ["self_attn.q_proj", "mlp.down_proj"]}


def test_all_layers_and_dora(tiny_model_path, tmp_path, data):
    result = quick_train(tiny_model_path, tmp_path, data, lora_layers=-1, fine_tune_type="dora")
    for layer in result.model.layers:
        assert all(isinstance(modules(layer)[key], DoRALinear) for key in LINEARS)
    import mlx_lm

    mlx_lm.load(str(tiny_model_path), adapter_path=str(tmp_path / "run/adapter"))  # DoRA adapters load too


@pytest.mark.parametrize(
    "overrides, cls, attrs",
    [
        (dict(optimizer="adamw", weight_decay=0.05, optimizer_config={"betas": [0.8, 0.95]}), optim.AdamW,
         {"weight_decay": 0.05, "betas": [0.8, 0.95]}),
        (dict(optimizer="sgd", optimizer_config={"momentum": 0.5}), optim.SGD, {"momentum": 0.5, "weight_decay": 0.0}),
        (dict(optimizer="adam"), optim.Adam, {"betas": [0.9, 0.999]}),
        (dict(optimizer="lion", weight_decay=0.1), optim.Lion, {"weight_decay": 0.1}),
    ],
)
def test_optimizer_keys(tiny_model_path, tmp_path, data, overrides, cls, attrs):
    result = quick_train(tiny_model_path, tmp_path, data, **overrides)
    assert type(result.optimizer) is cls
    for name, value in attrs.items():
        assert getattr(result.optimizer, name) == pytest.approx(value), name
    assert result.optimizer.step.item() == 4  # it is the optimizer that trained


def lrs(tmp_path: Path) -> dict[int, float]:
    import csv

    with open(tmp_path / "run/history/train.csv") as fh:
        return {int(r["step"]): float(r["learning_rate"]) for r in csv.DictReader(fh)}


def test_warmup_then_cosine_to_min_learning_rate(tiny_model_path, tmp_path, data):
    quick_train(tiny_model_path, tmp_path, data, iters=6, steps_per_report=1, learning_rate=1e-3,
                lr_schedule="cosine", warmup_steps=2, warmup_init=1e-4, min_learning_rate=1e-5)
    lr = lrs(tmp_path)  # the rate each update used
    assert lr[1] == pytest.approx(1e-4, rel=1e-4)  # warmup_init
    assert lr[2] == pytest.approx(1e-4 + (1e-3 - 1e-4) / 2, rel=1e-4)  # halfway through the 2 warmup steps
    assert lr[3] == pytest.approx(1e-3, rel=1e-4) and lr[4] == pytest.approx(1e-3, rel=1e-4)  # peak
    assert lr[4] > lr[5] > lr[6]
    assert lr[6] == pytest.approx(1e-5, rel=1e-3)  # min_learning_rate at the last update


def test_linear_and_constant_schedules(tiny_model_path, tmp_path, data):
    quick_train(tiny_model_path, tmp_path / "linear", data, iters=4, steps_per_report=1, learning_rate=4e-4,
                lr_schedule="linear", min_learning_rate=0.0)
    assert lrs(tmp_path / "linear") == pytest.approx({1: 4e-4, 2: 4e-4 * 2 / 3, 3: 4e-4 / 3, 4: 0.0}, abs=1e-9)
    quick_train(tiny_model_path, tmp_path / "constant", data, iters=3, steps_per_report=1, learning_rate=1e-5)
    assert lrs(tmp_path / "constant") == pytest.approx({1: 1e-5, 2: 1e-5, 3: 1e-5})


def test_grad_accumulation_steps(tiny_model_path, tmp_path, data):
    result = quick_train(tiny_model_path, tmp_path, data, iters=6, grad_accumulation_steps=3)
    assert result.optimizer.step.item() == 2
    assert result.run["optimizer_steps"] == 2


def target_tokens(rows: list[dict], tokenizer, mask_prompt: bool, max_seq_length: int) -> list[int]:
    """Tokens each row contributes to the loss, computed from the tokenizer (not the package)."""
    counts = []
    for row in rows:
        messages = row["messages"]
        n = len(tokenizer.apply_chat_template(messages, return_dict=False))
        offset = len(tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, return_dict=False))
        # mlx-lm's default_loss counts target positions first..last inclusive, where last is the row
        # length n (one padding target past the end, as mlx-lm does) or max_seq_length - 1 when cut, and
        # first is 1, or the first reply token's position with mask_prompt.
        last = n if n < max_seq_length else max_seq_length - 1
        first = offset if mask_prompt else 1
        counts.append(max(last - first + 1, 0))
    return counts


@pytest.mark.parametrize("batch_size, max_seq_length, mask_prompt", [(4, 512, True), (3, 512, False), (2, 80, False)])
def test_batch_size_max_seq_length_and_mask_prompt_reach_the_batches(
        tiny_model_path, tmp_path, batch_size, max_seq_length, mask_prompt):
    rows = chat_rows(13, seed=5)
    write_rows(tmp_path / "data/train.jsonl", rows)
    write_rows(tmp_path / "data/valid.jsonl", chat_rows(4, seed=6))
    _, tokenizer = load(str(tiny_model_path))
    counts = target_tokens(rows, tokenizer, mask_prompt, max_seq_length)
    lengths = [len(tokenizer.apply_chat_template(r["messages"], return_dict=False)) for r in rows]
    # One epoch: every batch once; the longest len % batch_size rows do not fill a batch and are left out.
    order = sorted(range(len(rows)), key=lambda i: lengths[i])
    used = order[: batch_size * (len(rows) // batch_size)]
    result = quick_train(tiny_model_path, tmp_path, tmp_path / "data", iters=len(rows) // batch_size,
                         batch_size=batch_size, max_seq_length=max_seq_length, mask_prompt=mask_prompt,
                         steps_per_report=100, val_batches=-1)
    assert result.metrics["trained_tokens"] == sum(counts[i] for i in used)
    assert result.run["data"]["train_batches"] == len(rows) // batch_size
    assert result.run["data"]["truncated_train_rows"] == sum(n > max_seq_length for n in lengths)


def test_report_eval_and_save_cadence(tiny_model_path, tmp_path, data):
    result = quick_train(tiny_model_path, tmp_path, data, iters=7, steps_per_report=3, steps_per_eval=4, save_every=3)
    assert [r["step"] for r in result.recorder.train_rows] == [3, 6, 7]
    assert [r["step"] for r in result.recorder.val_rows] == [0, 4, 7]
    saved = sorted(p.name for p in (tmp_path / "run/adapter").glob("0*_adapters.safetensors"))
    assert saved == ["0000003_adapters.safetensors", "0000006_adapters.safetensors"]


def test_val_batches(tiny_model_path, tmp_path, data):
    one = quick_train(tiny_model_path, tmp_path / "one", data, val_batches=1)
    every = quick_train(tiny_model_path, tmp_path / "all", data, val_batches=-1)
    assert one.run["data"]["val_batches"] == 1
    assert every.run["data"]["val_batches"] == 8 // 2  # valid rows / batch_size
    assert one.recorder.val_rows[0]["val_loss"] != every.recorder.val_rows[0]["val_loss"]


def test_seed_fixes_the_run(tiny_model_path, tmp_path, data):
    runs = [quick_train(tiny_model_path, tmp_path / name, data, seed=seed, lora_dropout=0.1)
            for name, seed in (("a", 3), ("b", 3), ("c", 4))]
    losses = [[r["train_loss"] for r in run.recorder.train_rows] for run in runs]
    assert losses[0] == losses[1] != losses[2]
    weights = [mx.load(str(tmp_path / name / "run/adapter/adapters.safetensors")) for name in "abc"]
    assert all(mx.array_equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not all(mx.array_equal(weights[0][k], weights[2][k]) for k in weights[0])


def test_clear_cache_threshold(tiny_model_path, tmp_path, data):
    cleared = quick_train(tiny_model_path, tmp_path / "cleared", data, clear_cache_threshold=1)
    kept = quick_train(tiny_model_path, tmp_path / "kept", data, clear_cache_threshold=0)
    # Cleared after every step: only the report's own scalars are left in the cache (bytes, not MB).
    assert all(r["cache_mem_gb"] < 1e-6 for r in cleared.recorder.train_rows)
    assert all(r["cache_mem_gb"] > 1e-3 for r in kept.recorder.train_rows)


class _BlockCall(TrainingCallback):
    """Records whether the transformer block's __call__ is mlx-lm's checkpointed one during training."""

    def __init__(self):
        self.names = []

    def on_train_loss_report(self, info):
        from mlx_lm.models.qwen3 import TransformerBlock

        self.names.append(TransformerBlock.__call__.__name__)


def test_grad_checkpoint_is_used_during_training_and_undone_after(tiny_model_path, tmp_path, data):
    from mlx_lm.models.qwen3 import TransformerBlock

    original = TransformerBlock.__call__
    on, off = _BlockCall(), _BlockCall()
    quick_train(tiny_model_path, tmp_path / "on", data, grad_checkpoint=True, callbacks=[on])
    assert on.names == ["checkpointed_fn", "checkpointed_fn"]
    assert TransformerBlock.__call__ is original
    quick_train(tiny_model_path, tmp_path / "off", data, grad_checkpoint=False, callbacks=[off])
    assert off.names == ["__call__", "__call__"]


def test_iters_and_model(tiny_model_path, tmp_path, data):
    result = quick_train(tiny_model_path, tmp_path, data, iters=5)
    assert result.recorder.train_rows[-1]["step"] == 5 and result.metrics["iterations"] == 5
    assert Path(result.run["model_path"]) == Path(tiny_model_path)


def test_trust_remote_code_reaches_the_tokenizer(tiny_model_path, tmp_path, data):
    """A model whose tokenizer class ships as code loads only with trust_remote_code: true."""
    import shutil

    model = tmp_path / "custom-code-model"
    shutil.copytree(tiny_model_path, model)
    (model / "tokenization_custom.py").write_text(
        "from transformers import PreTrainedTokenizerFast\n\n"
        "class CustomTokenizer(PreTrainedTokenizerFast):\n    pass\n"
    )
    config = json.loads((model / "tokenizer_config.json").read_text())
    config["auto_map"] = {"AutoTokenizer": [None, "tokenization_custom.CustomTokenizer"]}
    config["tokenizer_class"] = "CustomTokenizer"
    (model / "tokenizer_config.json").write_text(json.dumps(config))
    # Without trust, transformers ignores the shipped class and falls back to its generic fast tokenizer.
    untrusted = quick_train(model, tmp_path / "untrusted", data, trust_remote_code=False)
    assert untrusted.run["tokenizer_class"] != "CustomTokenizer"
    trusted = quick_train(model, tmp_path / "trusted", data, trust_remote_code=True)
    assert trusted.run["tokenizer_class"] == "CustomTokenizer"
