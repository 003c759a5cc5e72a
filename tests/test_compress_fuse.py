"""`compression-layer fuse`: a standalone model folder that generates what base + adapter generate, from a
float or an 8-bit base (kept quantized, or --de-quantize), GGUF where mlx-lm supports the architecture.

Run: pytest tests/test_compress_fuse.py   (about half a minute)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from compress_support import TEXTS, cli, one_line_error, q8_adapter, q8_model  # noqa: F401
from eval_support import eval_adapter, eval_base_model, make_adapter  # noqa: F401

from compression_layer.compress import CompressError, Compressor, ModelMismatchError
from compression_layer.compress.compressor import FUSE_RECORD
from compression_layer.compress.fuse import GGUF_FILE, _check_gguf, fuse

MAX_TOKENS = 24


def lora_free(model: nn.Module) -> bool:
    return not any(hasattr(m, "lora_a") for _, m in model.named_modules())


@pytest.fixture(scope="module")
def fused(eval_adapter, tmp_path_factory):
    """The float adapter fused through the console command."""
    tmp = tmp_path_factory.mktemp("fused")
    proc = cli("fuse", "--adapter", eval_adapter, "--output", "out/fused", cwd=tmp)
    return tmp / "out/fused", proc


def test_fused_model_generates_what_base_plus_adapter_generates(fused, eval_adapter):
    import mlx_lm

    path, proc = fused
    assert proc.stdout.startswith("wrote out/fused (float; ")
    model, _ = mlx_lm.load(str(path))  # no adapter needed
    assert lora_free(model)
    with_adapter = Compressor.load(eval_adapter, max_tokens=MAX_TOKENS)
    alone = Compressor.load(None, str(path), max_tokens=MAX_TOKENS)
    assert alone.prompts(TEXTS) == with_adapter.prompts(TEXTS)  # the tokenizer and chat template came along
    expected = with_adapter.compress_many(TEXTS, batch_size=4)
    assert alone.compress_many(TEXTS, batch_size=4) == expected
    assert [alone.compress(t) for t in TEXTS[:3]] == expected[:3]
    proc = cli("compress", "--model", path, "--no-adapter", "--max-tokens", MAX_TOKENS, TEXTS[0], cwd=path.parent)
    assert proc.stdout == expected[0] + "\n"
    assert len(set(expected)) > 1
    record = json.loads((path / FUSE_RECORD).read_text())
    assert record["adapter"] == str(eval_adapter.resolve()) and record["de_quantized"] is False
    assert alone.max_seq_length == record["max_seq_length"] == with_adapter.max_seq_length


def test_quantized_base_stays_8_bit_or_is_de_quantized(tmp_path, q8_model, q8_adapter):
    import mlx_lm

    quantized = fuse(tmp_path / "q8", q8_adapter)
    floats = fuse(tmp_path / "float", q8_adapter, de_quantize=True)
    assert quantized.quantized and not floats.quantized
    assert json.loads((tmp_path / "q8/config.json").read_text())["quantization"]["bits"] == 8
    assert "quantization" not in json.loads((tmp_path / "float/config.json").read_text())

    q_model, _ = mlx_lm.load(str(tmp_path / "q8"))
    f_model, _ = mlx_lm.load(str(tmp_path / "float"))
    assert lora_free(q_model) and lora_free(f_model)
    q_proj, f_proj = q_model.layers[-1].self_attn.q_proj, f_model.layers[-1].self_attn.q_proj
    assert isinstance(q_proj, nn.QuantizedLinear) and q_proj.bits == 8
    assert type(f_proj) is nn.Linear
    # re-quantizing base + LoRA delta puts each weight on its group's 8-bit grid: within one step of the
    # float fusion (MLX's affine quantization also rounds the group's offset, so not always half a step)
    restored = mx.dequantize(q_proj.weight, q_proj.scales, q_proj.biases, q_proj.group_size, q_proj.bits)
    step = np.repeat(np.abs(np.array(q_proj.scales)), q_proj.group_size, axis=1)
    assert np.all(np.abs(np.array(restored) - np.array(f_proj.weight)) <= step * 1.0001)

    # the de-quantized fusion is exact: same greedy outputs as the 8-bit base + adapter
    expected = Compressor.load(q8_adapter, max_tokens=MAX_TOKENS).compress_many(TEXTS)
    assert Compressor.load(None, str(tmp_path / "float"), max_tokens=MAX_TOKENS).compress_many(TEXTS) == expected
    assert len(set(expected)) > 1


@pytest.fixture(scope="module")
def llama(eval_base_model, tmp_path_factory) -> Path:
    """A random two-layer Llama with the test model's tokenizer: an architecture mlx-lm exports to GGUF."""
    from mlx_lm.utils import load_model, save_model

    out = tmp_path_factory.mktemp("llama") / "llama"
    out.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(eval_base_model / name, out / name)
    base = json.loads((eval_base_model / "config.json").read_text())
    config = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": base["vocab_size"],
              "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": False,
              "eos_token_id": base["eos_token_id"]}  # fmt: skip
    (out / "config.json").write_text(json.dumps(config))
    mx.random.seed(0)
    model, _ = load_model(out, strict=False)
    save_model(out, model)
    return out


def test_gguf_export_for_a_supported_architecture(tmp_path, llama):
    from mlx.utils import tree_flatten
    from mlx_lm.utils import load_model

    adapter = make_adapter(llama, tmp_path / "adapter", layers=2)
    proc = cli("fuse", "--adapter", adapter, "--output", "fused", "--gguf", cwd=tmp_path)
    assert proc.stdout.splitlines()[-1] == f"wrote fused/{GGUF_FILE}"
    gguf = mx.load(str(tmp_path / "fused" / GGUF_FILE))
    fused, _ = load_model(tmp_path / "fused")
    base, _ = load_model(llama)
    down = "model.layers.1.mlp.down_proj.weight"
    weights, base_weights = dict(tree_flatten(fused.parameters())), dict(tree_flatten(base.parameters()))
    # GGUF holds the fused weights (the adapter's change included) under llama.cpp's names
    np.testing.assert_array_equal(np.array(gguf["blk.1.ffn_down.weight"]), np.array(weights[down]))
    assert not np.allclose(np.array(weights[down]), np.array(base_weights[down]))


def test_gguf_is_refused_where_mlx_lm_cannot_export(tmp_path, eval_adapter):
    line = one_line_error(cli("fuse", "--adapter", eval_adapter, "--output", "fused", "--gguf", cwd=tmp_path, check=False))
    assert "GGUF export: mlx-lm 0.32" in line and "not qwen3" in line and "fuse without --gguf" in line
    assert not any(tmp_path.iterdir())  # refused before writing anything
    with pytest.raises(CompressError, match="needs unquantized weights: add --de-quantize"):
        _check_gguf({"model_type": "llama", "quantization": {"bits": 8, "group_size": 64}}, de_quantize=False)
    _check_gguf({"model_type": "llama", "quantization": {"bits": 8, "group_size": 64}}, de_quantize=True)


def test_output_folder_and_adapter_errors(tmp_path, fused, eval_adapter, q8_model):
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(CompressError, match="exists and is not empty"):
        fuse(foreign, eval_adapter)
    with pytest.raises(CompressError, match="not written by fuse"):
        fuse(foreign, eval_adapter, overwrite=True)
    assert [p.name for p in foreign.iterdir()] == ["keep.txt"]

    again = tmp_path / "again"
    shutil.copytree(fused[0], again)
    (again / "stale.txt").write_text("from an earlier run")
    fuse(again, eval_adapter, overwrite=True)
    assert not (again / "stale.txt").exists() and (again / FUSE_RECORD).is_file()
    assert not list(tmp_path.glob(".again*"))  # no temporary folders left behind

    with pytest.raises(ModelMismatchError):
        fuse(tmp_path / "x", eval_adapter, model=str(q8_model))
    line = one_line_error(cli("fuse", "--output", "x", cwd=tmp_path, check=False))
    assert "no adapter at models/runs/mlx/latest/adapter" in line
    assert not (tmp_path / "x").exists()
