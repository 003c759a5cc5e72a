"""The best adapter and early stopping on the tiny model, and the evaluate stage's choice between best and last.

    .venv/bin/python -m pytest -q tests/test_train_best.py

A learning rate of 3e-2 makes the tiny model's validation loss go up and down, so "best" and "last" differ
and early stopping triggers. The early-stopping cases are derived from the validation losses of a run
without early stopping (so they hold for any build of the tiny model), and the expected stopping iteration
is computed here with the documented rule, not taken from the code under test. About 40 s.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import mlx.core as mx
import pytest
import yaml
from mlx_lm.tuner.callbacks import TrainingCallback
from train_support import ROOT, chat_rows, make_data, quick_train, write_rows

from compression_layer.evaluate.generate import BEST_ADAPTER_FILE as EVALUATE_BEST_FILE
from compression_layer.params import ParamsError, build
from compression_layer.train.checkpoint import BEST_ADAPTER_FILE
from compression_layer.train.config import TrainConfig

# A learning rate far too high on purpose: validations then go up as well as down (measured on the
# embedded model: 26.4, 28.6, 19.8, 11.3, 9.2, 8.5, 8.9, 9.3, 8.3), which early stopping needs.
SETTINGS = dict(iters=16, learning_rate=1.0, steps_per_eval=2, save_every=2)


class ValLosses(TrainingCallback):
    """The exact validation losses (history/val.csv rounds them)."""

    def __init__(self):
        self.losses: list[tuple[int, float]] = []

    def on_val_loss_report(self, info: dict) -> None:
        self.losses.append((info["iteration"], info["val_loss"]))


def expected_stop(losses: list[tuple[int, float]], patience: int, min_delta: float) -> int | None:
    """The rule as documented: stop after `patience` validations in a row whose loss is not below the best
    so far by more than `min_delta` (the validation at iteration 0 sets the first best)."""
    best, bad = math.inf, 0
    for step, loss in losses:
        bad = 0 if loss < best - min_delta else bad + 1
        best = min(best, loss)
        if bad >= patience:
            return step
    return None


def longest_streak(losses: list[tuple[int, float]]) -> int:
    """The most validations in a row that did not improve on the best so far."""
    best, bad, longest = math.inf, 0, 0
    for _, loss in losses:
        bad = 0 if loss < best else bad + 1
        best, longest = min(best, loss), max(longest, bad)
    return longest


def early_stopping_cases(losses: list[tuple[int, float]]) -> dict[str, tuple[int, float]]:
    """(patience, min_delta) per case, from the losses of the run without early stopping."""
    streak = longest_streak(losses)
    steps = [s for s, _ in losses]
    improvements = [prev - loss for (_, prev), (_, loss) in zip(losses, losses[1:]) if loss < prev]
    return {
        "patience-1": (1, 0.0),  # the first validation that does not improve
        "longest-streak": (streak, 0.0),  # the end of the first streak of non-improvements that long
        "no-stop": (streak + 1, 0.0),  # never: no streak is that long
        "min-delta-all": (streak + 1, 1e9),  # no improvement is large enough: stops at validation streak + 1
        # the smallest step down counts as none; whether that stops depends on the losses
        "min-delta-smallest": (streak + 1, min(improvements) if improvements else 0.0),
    } if streak and len(steps) > streak + 2 else {}


def same_weights(a, b) -> bool:
    x, y = mx.load(str(a)), mx.load(str(b))
    return x.keys() == y.keys() and all(mx.array_equal(x[k], y[k]).item() for k in x)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("best-data"))


@pytest.fixture(scope="module")
def full(tiny_model_path, tmp_path_factory, data):
    """The run without early stopping: every validation, a checkpoint at each."""
    tmp = tmp_path_factory.mktemp("best-full")
    losses = ValLosses()
    result = quick_train(tiny_model_path, tmp, data=data, callbacks=[losses], **SETTINGS)
    return result, tmp / "run", losses.losses


@pytest.fixture(scope="module")
def stopped(tiny_model_path, tmp_path_factory, data):
    """Runs with early stopping, by (patience, min_delta)."""
    runs = {}

    def get(patience: int, min_delta: float):
        if (patience, min_delta) not in runs:
            tmp = tmp_path_factory.mktemp("best-stopped")
            result = quick_train(tiny_model_path, tmp, data=data, early_stopping_patience=patience,
                                 early_stopping_min_delta=min_delta, **SETTINGS)
            runs[patience, min_delta] = result, tmp / "run"
        return runs[patience, min_delta]

    return get


def test_the_best_file_name_is_the_one_evaluate_and_compress_read():
    assert BEST_ADAPTER_FILE == EVALUATE_BEST_FILE == "best_adapters.safetensors"


def test_best_adapter_is_the_checkpoint_with_the_lowest_val_loss(full):
    result, run, losses = full
    best_step, best_loss = min(losses, key=lambda sl: sl[1])
    assert result.metrics["best_val_iteration"] == best_step
    assert result.metrics["best_val_loss"] == pytest.approx(best_loss, abs=1e-6)
    assert result.metrics["stopped_early"] is False and result.metrics["iterations"] == 16
    run_json = json.loads((run / "run.json").read_text())
    assert run_json["best_adapter"] == {"file": "adapter/best_adapters.safetensors", "iteration": best_step,
                                        "val_loss": result.metrics["best_val_loss"]}
    assert run_json["stopped_early"] is None
    assert same_weights(run / "adapter" / BEST_ADAPTER_FILE, run / "adapter" / f"{best_step:07d}_adapters.safetensors")


@pytest.mark.parametrize("case", ["patience-1", "longest-streak", "no-stop", "min-delta-all",
                                  "min-delta-smallest"])
def test_early_stopping_stops_where_the_rule_says(full, stopped, case):
    _, full_run, losses = full
    cases = early_stopping_cases(losses)
    assert cases, f"these settings are meant to give non-improving validations: {losses}"
    patience, min_delta = cases[case]
    stop = expected_stop(losses, patience, min_delta)
    if case in ("patience-1", "longest-streak", "min-delta-all"):
        assert stop is not None and stop < 16
    if case == "no-stop":
        assert stop is None
    if case == "min-delta-all":
        assert stop == 2 * patience  # every validation after iteration 0 counts as no improvement
    result, run = stopped(patience, min_delta)
    run_json = json.loads((run / "run.json").read_text())
    assert run_json["status"] == "completed"
    if stop is None:
        assert result.metrics["iterations"] == 16 and result.metrics["stopped_early"] is False
        assert run_json["stopped_early"] is None and "early stop:" not in (run / "train.log").read_text()
        return

    assert result.metrics["iterations"] == stop and result.metrics["stopped_early"] is True
    info = run_json["stopped_early"]
    assert info["iteration"] == stop and f"early_stopping_patience {patience}" in info["reason"]
    assert f"for {patience} validations in a row" in info["reason"]
    early = [line for line in (run / "train.log").read_text().splitlines() if "early stop:" in line]
    assert len(early) == 1 and f"iter {stop} |" in early[0].replace("  ", " ")
    # The same run as without early stopping, cut at the stop: the last adapter is that iteration's.
    val_rows = (run / "history/val.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in val_rows] == [s for s, _ in losses if s <= stop]
    assert int((run / "history/train.csv").read_text().splitlines()[-1].split(",")[0]) == stop
    assert same_weights(run / "adapter/adapters.safetensors", full_run / f"adapter/{stop:07d}_adapters.safetensors")
    # The best adapter is the lowest val loss up to the stop, kept beside the last one.
    best_step = min(((s, v) for s, v in losses if s <= stop), key=lambda sl: sl[1])[0]
    assert result.metrics["best_val_iteration"] == info["best_val_iteration"] == best_step
    best_file = full_run / f"adapter/{best_step:07d}_adapters.safetensors" if best_step else None
    if best_file is not None:
        assert same_weights(run / "adapter" / BEST_ADAPTER_FILE, best_file)
    if min_delta == 0.0:
        assert best_step < stop  # stopping on a validation that did not improve: best and last differ


@pytest.mark.parametrize("values, message", [
    ({"early_stopping_patience": -1}, "early_stopping_patience must be >= 0"),
    ({"early_stopping_min_delta": -0.1}, "early_stopping_min_delta must be >= 0"),
    ({"early_stopping_patience": 1.5}, "early_stopping_patience: expected an integer"),
])
def test_bad_early_stopping_params(values, message):
    with pytest.raises(ParamsError, match=message):
        build(TrainConfig, values, "params.yaml")


def test_patience_zero_is_off(tiny_model_path, tmp_path, data):
    result = quick_train(tiny_model_path, tmp_path, data=data, early_stopping_patience=0, **SETTINGS)
    assert result.metrics["iterations"] == 16 and result.metrics["stopped_early"] is False


@pytest.mark.parametrize("which", ["best", "last"])
def test_eval_adapter_param_chooses_the_file_evaluate_uses(tmp_path, tiny_model_path, stopped, which):
    """stages/evaluate.py on a run whose best (iteration < stop) and last adapters differ, with
    eval_adapter from a params file as the pipeline passes it."""
    result, run = stopped(1, 0.0)
    assert result.metrics["stopped_early"] and result.metrics["best_val_iteration"] < result.metrics["iterations"]
    test = write_rows(tmp_path / "test.jsonl", chat_rows(4, seed=3))
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"model": str(tiny_model_path), "eval_adapter": which, "eval_limit": 2,
                                      "eval_max_tokens": 4, "eval_batch_size": 2}))
    proc = subprocess.run([sys.executable, str(ROOT / "stages/evaluate.py"), "--params", str(params),
                           "--adapter-path", str(run / "adapter"), "--test", str(test),
                           "--output", str(tmp_path / "predictions.jsonl"), "--metrics", str(tmp_path / "eval.json")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    adapter = json.loads((tmp_path / "eval.json").read_text())["settings"]["adapter"]
    assert adapter["kind"] == which
    assert adapter["file"].endswith(BEST_ADAPTER_FILE if which == "best" else "/adapters.safetensors")
    # The loss the evaluate stage reports is that of the chosen weights.
    from compression_layer.evaluate.generate import load, test_loss

    model, tokenizer, weights = load(str(tiny_model_path), run / "adapter", which)
    records = [json.loads(line) for line in test.read_text().splitlines()]
    expected = test_loss(model, tokenizer, records, 4, -1, 2048)["loss"]
    assert json.loads((tmp_path / "eval.json").read_text())["test_loss"] == pytest.approx(expected, rel=1e-5)
    other = load(str(tiny_model_path), run / "adapter", "last" if which == "best" else "best")
    assert test_loss(other[0], other[1], records, 4, -1, 2048)["loss"] != pytest.approx(expected, rel=1e-5)
