"""The eval_* params: defaults, params.yaml, and clear errors. Run: pytest tests/test_eval_config.py"""

from __future__ import annotations

import dataclasses

import pytest
from repo_utils import ROOT

from compression_layer.evaluate.config import EvalConfig
from compression_layer.params import ParamsError, build, field_help, load_yaml


def test_every_eval_key_is_in_params_yaml_with_help():
    params = load_yaml(ROOT / "params.yaml")
    names = [f.name for f in dataclasses.fields(EvalConfig)]
    assert all(name.startswith("eval_") for name in names)
    assert set(names) <= set(params)
    assert all(text for text in field_help(EvalConfig).values())
    cfg = build(EvalConfig, {k: params[k] for k in names}, "params.yaml")
    assert cfg.eval_batch_size >= 1 and cfg.eval_adapter in ("best", "last")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"eval_batch_size": 0}, "eval_batch_size must be >= 1"),
        ({"eval_limit": -1}, "eval_limit must be >= 0"),
        ({"eval_adapter": "newest"}, "'newest' is not one of 'best', 'last'"),
        ({"eval_loss_batches": 0}, "eval_loss_batches must be -1"),
        ({"eval_batchsize": 4}, "did you mean 'eval_batch_size'"),
    ],
)
def test_bad_values_fail_with_one_clear_line(values, message):
    with pytest.raises(ParamsError, match=message):
        build(EvalConfig, values, "params.yaml")


def test_null_limit_means_all_rows():
    assert build(EvalConfig, {"eval_limit": None}, "p").eval_limit is None
