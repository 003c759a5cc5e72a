"""Training params: typed reading (1e-5 is a float), validation, stage flag overrides, and the declarations
in params.yaml and dvc.yaml that make `dvc exp run -S <key>=...` work for every key.

    .venv/bin/python -m pytest -q tests/test_train_config.py
"""

from __future__ import annotations

import ast
import dataclasses
import re

import pytest
import yaml
from train_support import ROOT, load_stage

from compression_layer.config import load_run_config
from compression_layer.params import ParamsError, build, field_help, load_yaml
from compression_layer.train.config import TrainConfig
from compression_layer.train.distributed import DistributedConfig

FIELDS = [f.name for f in dataclasses.fields(TrainConfig)]


def test_scientific_notation_reads_as_a_float(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("learning_rate: 1e-5\nmin_learning_rate: 2E-7\nwarmup_init: 1e-6\n")
    config = load_run_config(path).train
    assert config.learning_rate == 1e-5 and isinstance(config.learning_rate, float)
    assert config.min_learning_rate == 2e-7 and config.warmup_init == 1e-6


def test_the_shipped_params_build_and_cover_every_key():
    data = load_yaml(ROOT / "params.yaml")
    assert set(FIELDS) <= set(data), set(FIELDS) - set(data)
    config = load_run_config(ROOT / "params.yaml").train
    assert config.lora_scale == config.lora_alpha / config.lora_rank


def test_every_key_has_help_and_a_comment_in_params_yaml():
    assert all(text.strip() for text in field_help(TrainConfig).values())
    lines = (ROOT / "params.yaml").read_text().splitlines()
    for name in FIELDS:
        line = next(l for l in lines if re.match(rf"^{name}:", l))
        assert "#" in line and line.split("#", 1)[1].strip(), f"{name} has no comment in params.yaml"


def test_dvc_yaml_declares_exactly_the_training_keys_and_the_modules_imported():
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["train"]
    # ... and the data-parallel keys (train/distributed.py), which the stage reads too.
    assert sorted(stage["params"]) == sorted(FIELDS + [f.name for f in dataclasses.fields(DistributedConfig)])
    deps = set(stage["deps"])
    assert {"stages/train.py", "data/training/train.jsonl", "data/training/valid.jsonl",
            "models/base/tiny-qwen3"} <= deps
    # Every compression_layer module the stage imports (directly or through the package) is a dep.
    wanted, todo = set(), ["stages/train.py"]
    while todo:
        path = todo.pop()
        tree = ast.parse((ROOT / path).read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("compression_layer"):
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("compression_layer")]
            for name in names:
                rel = "src/" + name.replace(".", "/")
                for candidate in (rel + ".py", rel + "/__init__.py"):
                    if (ROOT / candidate).exists() and candidate not in wanted:
                        wanted.add(candidate)
                        todo.append(candidate)
    assert wanted <= deps, sorted(wanted - deps)
    assert stage["outs"] == ["models/runs/mlx/latest"]
    assert stage["metrics"] == [{"metrics/train.json": {"cache": False}}]


@pytest.mark.parametrize(
    "values, message",
    [
        ({"lora_dropout": 1.0}, "lora_dropout must be in [0, 1), got 1.0"),
        ({"lora_layers": 0}, "lora_layers must be -1 (all) or >= 1, got 0"),
        ({"lora_rank": 0}, "lora_rank must be >= 1, got 0"),
        ({"lora_keys": []}, "lora_keys must list at least one module path"),
        ({"learning_rate": 0}, "learning_rate must be > 0, got 0.0"),
        ({"min_learning_rate": 1.0}, "min_learning_rate must be in [0, learning_rate="),
        ({"warmup_steps": 150}, "warmup_steps (150) must be smaller than the number of optimizer steps (150"),
        ({"weight_decay": 0.1}, "weight_decay is not supported by optimizer 'adam'"),
        ({"optimizer": "rmsprop"}, "'rmsprop' is not one of"),
        ({"optimizer_config": {"learning_rate": 1}}, "optimizer_config must not set learning_rate"),
        ({"val_batches": 0}, "val_batches must be -1 (all) or >= 1, got 0"),
        ({"batch_size": "4"}, "batch_size: expected an integer, got '4'"),
        ({"lora_rnak": 16}, "unknown key 'lora_rnak' (did you mean 'lora_rank'?)"),
    ],
)
def test_bad_values_fail_with_one_line(values, message):
    with pytest.raises(ParamsError) as info:
        build(TrainConfig, values, "params.yaml")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_stage_flags_override_params_with_yaml_values(tmp_path):
    stage = load_stage()
    params = tmp_path / "params.yaml"
    params.write_text("learning_rate: 2e-4\nlora_rank: 8\n")
    args = stage.parse_args(["--params", str(params), "--learning-rate", "1e-5", "--lora-keys",
                             "[self_attn.q_proj, mlp.up_proj]", "--weight-decay", "null", "--optimizer", "adamw",
                             "--model", "1e-5", "--grad-checkpoint", "true", "--iters", "7"])
    config = stage.load_config(args)
    assert config.learning_rate == 1e-5 and isinstance(config.learning_rate, float)
    assert config.lora_keys == ["self_attn.q_proj", "mlp.up_proj"]
    assert config.weight_decay is None and config.optimizer == "adamw"
    assert config.model == "1e-5"  # a model name stays a string, whatever it looks like
    assert config.grad_checkpoint is True and config.iters == 7 and config.lora_rank == 8
    with pytest.raises(ParamsError, match="--lora-keys: cannot read"):
        stage.load_config(stage.parse_args(["--params", str(params), "--lora-keys", "[unclosed"]))
