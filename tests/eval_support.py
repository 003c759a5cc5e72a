"""Helpers for the evaluate-stage tests: a LoRA adapter made in code, and a small chat test split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compression_layer.data.chat import to_chat

NL_TEXTS = [
    "The meeting was moved from Monday to Thursday at 3 pm because the client could not attend. "
    "Please do not book the large room; it is reserved for the 2024 board review.",
    "Our quarterly revenue grew by 12.5 percent to 4,200,000 dollars, driven mainly by new customers "
    "in Europe. Costs did not change.",
    "The library opens at 9 in the morning and closes at 8 in the evening. It is never open on public holidays.",
    "Water boils at 100 degrees Celsius at sea level. At higher altitudes it boils at a lower temperature.",
    "The train to Lyon leaves from platform 7 every 30 minutes. Tickets cost 25 euros and cannot be refunded.",
]
CODE_TEXTS = [
    "def load_config(path):\n    with open(path) as fh:\n        return json.load(fh)\n",
    "class UserRepository:\n    def __init__(self, db):\n        self.db = db\n\n    def find_by_id(self, user_id):\n"
    "        return self.db.query(User).get(user_id)\n",
    "function parseDate(value) {\n  const parts = value.split('-');\n  return new Date(parts[0], parts[1] - 1, parts[2]);\n}\n",
]


def write_test_split(path: Path, n: int = 8) -> list[dict]:
    """``n`` plain chat records (as the split writes them) cycling through the NL and code texts; the
    expected output is the first third of the text."""
    texts = NL_TEXTS + CODE_TEXTS
    records = []
    for i in range(n):
        text = texts[i % len(texts)]
        verbose = text if i < len(texts) else f"{text} (copy {i})"
        records.append(to_chat(verbose, verbose[: len(verbose) // 3]))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return records


def make_adapter(model_path: Path, out: Path, rank: int = 4, layers: int = 2, seed: int = 1) -> Path:
    """A LoRA adapter for ``model_path`` with random B matrices (mlx-lm starts B at zero, which would
    leave the model unchanged), saved as mlx-lm saves one. B's scale (0.2) is large enough that two
    seeds change the embedded model's greedy outputs (at 0.02 its confident outputs did not move)."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm import load
    from mlx_lm.tuner.utils import linear_to_lora_layers

    model, _ = load(str(model_path))
    model.freeze()
    params = {"rank": rank, "scale": 20.0, "dropout": 0.0}
    mx.random.seed(seed)
    linear_to_lora_layers(model, layers, params)
    for _, module in model.named_modules():
        if hasattr(module, "lora_b"):
            module.lora_b = mx.random.normal(module.lora_b.shape) * 0.2
    out.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(out / "adapters.safetensors"), dict(tree_flatten(model.trainable_parameters())))
    config = {"fine_tune_type": "lora", "num_layers": layers, "lora_parameters": params, "model": str(model_path)}
    (out / "adapter_config.json").write_text(json.dumps(config), encoding="utf-8")
    return out


def build_random_tiny_model(out: Path, seed: int = 0) -> Path:
    """A random-weight Qwen3 model with a byte-level BPE tokenizer and a ChatML template, built in about
    a second (stack-facts.md); used when the embedded tiny model is not available."""
    import mlx.core as mx
    from mlx.utils import tree_map
    from mlx_lm.utils import load_model, save_model
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    out.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )  # fmt: skip
    bpe.train_from_iterator(NL_TEXTS + CODE_TEXTS, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    tokenizer.save_pretrained(out)
    config = {
        "model_type": "qwen3", "architectures": ["Qwen3ForCausalLM"], "hidden_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "intermediate_size": 128,
        "vocab_size": bpe.get_vocab_size(), "tie_word_embeddings": True, "rope_theta": 10000.0,
        "rms_norm_eps": 1e-6, "max_position_embeddings": 2048, "eos_token_id": bpe.token_to_id("<|im_end|>"),
    }  # fmt: skip
    (out / "config.json").write_text(json.dumps(config), encoding="utf-8")
    mx.random.seed(seed)
    model, _ = load_model(out, strict=False)
    # Default initialisation makes a model this small repeat one token; wider weights give varied text.
    model.update(tree_map(lambda p: mx.random.normal(p.shape) * 0.3 if p.ndim == 2 else p, model.parameters()))
    save_model(out, model)
    (out / "config.json").write_text(json.dumps(config), encoding="utf-8")  # save_model may rewrite it
    return out


@pytest.fixture(scope="session")
def eval_base_model(request, tmp_path_factory) -> Path:
    """The embedded tiny model when it has been built, else a random one built here."""
    if (Path(__file__).resolve().parents[1] / "models/base/tiny-qwen3/model.safetensors").is_file():
        return Path(request.getfixturevalue("tiny_model_path"))
    return build_random_tiny_model(tmp_path_factory.mktemp("eval-model") / "tiny")


@pytest.fixture(scope="session")
def eval_adapter(eval_base_model, tmp_path_factory) -> Path:
    return make_adapter(eval_base_model, tmp_path_factory.mktemp("eval-adapter") / "adapter")
