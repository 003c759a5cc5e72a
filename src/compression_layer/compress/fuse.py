"""A standalone model folder: the adapter's LoRA weights merged into the base model (mlx-lm's fuse).

Follows ``mlx_lm.fuse`` step for step (fuse every LoRA layer, optionally de-quantize, ``save``, GGUF)
through its Python API, with the adapter and base model chosen as for compression (best checkpoint,
base model from adapter_config.json), checks before any work, and an all-or-nothing output folder.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compression_layer.compress.adapter import DEFAULT_ADAPTER, base_model, local_model_dir, read_adapter
from compression_layer.compress.compressor import FUSE_RECORD
from compression_layer.compress.errors import CompressError
from compression_layer.evaluate.generate import EvaluateError, load
from compression_layer.io import write_json

# The architectures mlx_lm.fuse (0.32) converts to GGUF; it also needs unquantized weights.
GGUF_MODEL_TYPES = ("llama", "mistral", "mixtral")
GGUF_FILE = "ggml-model-f16.gguf"


@dataclass(frozen=True)
class FuseResult:
    path: Path
    base_model: str
    adapter_weights: Path
    quantized: bool  # the fused weights are quantized (a quantized base, fused without de-quantizing)
    gguf: Path | None


def _model_config(name: str) -> tuple[Path, dict[str, Any]] | None:
    """(local dir, config as mlx-lm reads it) when the model is on disk already."""
    from mlx_lm.utils import load_config

    local = local_model_dir(name)
    return (local, load_config(local)) if local else None


def _check_output(output: Path, overwrite: bool) -> None:
    if output.exists() and not output.is_dir():
        raise CompressError(f"output {output} is a file, expected a folder")
    if output.is_dir() and any(output.iterdir()):
        if not overwrite:
            raise CompressError(f"output {output} exists and is not empty: choose another --output, or --overwrite")
        if not (output / FUSE_RECORD).is_file():
            raise CompressError(f"will not overwrite {output}: it was not written by fuse (no {FUSE_RECORD})")


def _check_gguf(config: dict[str, Any], de_quantize: bool) -> None:
    model_type = config.get("model_type")
    if model_type not in GGUF_MODEL_TYPES:
        version = importlib.metadata.version("mlx-lm")
        raise CompressError(
            f"GGUF export: mlx-lm {version} converts only llama, mistral and mixtral models, not {model_type}: "
            "fuse without --gguf"
        )
    if "quantization" in config and not de_quantize:
        raise CompressError("GGUF export needs unquantized weights: add --de-quantize")


def fuse(
    output: str | Path,
    adapter_path: str | Path = DEFAULT_ADAPTER,
    model: str | None = None,
    checkpoint: str = "best",
    *,
    de_quantize: bool = False,
    gguf: bool = False,
    overwrite: bool = False,
) -> FuseResult:
    """Write base model + adapter as one model folder at ``output`` that ``mlx_lm.load`` reads alone.

    A quantized base stays quantized (the fused weights re-quantized with its bits and group size)
    unless ``de_quantize``; ``gguf`` also writes ggml-model-f16.gguf where mlx-lm supports the model.
    """
    from mlx.utils import tree_unflatten
    from mlx_lm.gguf import convert_to_gguf
    from mlx_lm.utils import dequantize_model, save

    output = Path(output)
    adapter = read_adapter(adapter_path, checkpoint)
    name = base_model(adapter, model)
    _check_output(output, overwrite)
    found = _model_config(name)
    if gguf and found:
        _check_gguf(found[1], de_quantize)
    try:
        lm, tokenizer, weights = load(name, adapter.path, checkpoint)
    except EvaluateError as exc:
        raise CompressError(str(exc)) from None
    local, config = found or _model_config(name)  # a hub id is in the cache once loaded
    if gguf:
        _check_gguf(config, de_quantize)

    fused = [(n, m.fuse(dequantize=de_quantize)) for n, m in lm.named_modules() if hasattr(m, "fuse")]
    if not fused:
        raise CompressError(f"adapter {adapter.path} adds no LoRA layer to {name}: nothing to fuse")
    lm.update_modules(tree_unflatten(fused))
    if de_quantize:
        lm = dequantize_model(lm)
        config.pop("quantization", None)
        config.pop("quantization_config", None)

    # Built beside the target and renamed at the end: a failure leaves no half-written model.
    partial = output.with_name(f".{output.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        save(partial, local, lm, tokenizer, config, donate_model=False)
        gguf_path = None
        if gguf:
            from mlx.utils import tree_flatten

            with contextlib.redirect_stdout(io.StringIO()):  # its progress lines name the temporary folder
                convert_to_gguf(partial, dict(tree_flatten(lm.parameters())), config, str(partial / GGUF_FILE))
            gguf_path = output / GGUF_FILE
        write_json(partial / FUSE_RECORD, {
            "base_model": name, "adapter": str(adapter.path.resolve()), "adapter_weights": str(weights.resolve()),
            "checkpoint": checkpoint, "de_quantized": de_quantize, "quantization": config.get("quantization"),
            "max_seq_length": adapter.max_seq_length, "gguf": GGUF_FILE if gguf else None,
        })  # fmt: skip
        (partial / FUSE_RECORD).chmod(0o644)  # written through a private temp file; the model folder is shared
        if output.exists():
            old = output.with_name(f".{output.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            output.rename(old)
            partial.rename(output)
            shutil.rmtree(old, ignore_errors=True)
        else:
            output.parent.mkdir(parents=True, exist_ok=True)
            partial.rename(output)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(partial)
        raise
    return FuseResult(output, name, weights, "quantization" in config, gguf_path)
