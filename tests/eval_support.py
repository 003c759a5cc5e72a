"""Helpers for the evaluate-stage tests: a LoRA adapter made in code, and a small chat test split."""

from __future__ import annotations

import json
from pathlib import Path

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
    """``n`` chat records cycling through the NL and code texts, with a ``domain`` key as the split writes."""
    texts = [(t, "nl") for t in NL_TEXTS] + [(t, "code") for t in CODE_TEXTS]
    records = []
    for i in range(n):
        text, domain = texts[i % len(texts)]
        verbose = text if i < len(texts) else f"{text} (copy {i})"
        records.append({**to_chat(verbose, verbose[: len(verbose) // 3]), "domain": domain})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return records


def make_adapter(model_path: Path, out: Path, rank: int = 4, layers: int = 2, seed: int = 1) -> Path:
    """A LoRA adapter for ``model_path`` with small random B matrices (mlx-lm starts B at zero, which
    would leave the model unchanged), saved as mlx-lm saves one."""
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
            module.lora_b = mx.random.normal(module.lora_b.shape) * 0.02
    out.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(out / "adapters.safetensors"), dict(tree_flatten(model.trainable_parameters())))
    config = {"fine_tune_type": "lora", "num_layers": layers, "lora_parameters": params, "model": str(model_path)}
    (out / "adapter_config.json").write_text(json.dumps(config), encoding="utf-8")
    return out
