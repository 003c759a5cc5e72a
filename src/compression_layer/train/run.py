"""One training run from params to files: the function stages/train.py and the benchmark call.

The run directory is written in place (so `tail -f <run>/train.log` works while it trains) with
run.json saying `running`; only a run that finishes leaves `<run>/` behind with status `completed`.
A failed or interrupted run is moved to `<run>.failed/` (status and error in its run.json), so DVC,
which caches outputs only after a successful command, never sees a half-made run dir as the output.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence, TextIO

from mlx_lm.tuner.callbacks import TrainingCallback

from compression_layer.io import write_json
from compression_layer.train import report
from compression_layer.train.callbacks import Chain, Recorder, RunLog
from compression_layer.train.checkpoint import BEST_ADAPTER_FILE
from compression_layer.train.config import TrainConfig
from compression_layer.train.distributed import barrier, rank
from compression_layer.train.errors import TrainError, out_of_memory
from compression_layer.train.resume import default_resume_dir, find_latest
from compression_layer.train.resume import discard as discard_resume_state
from compression_layer.train.stderr import tee_stderr

RUN_FILE = "run.json"


@dataclass
class TrainResult:
    run_dir: Path
    metrics: dict[str, Any]
    run: dict[str, Any]
    model: Any  # the trained LoRA model (for tests and callers that go on to evaluate)
    optimizer: Any
    tokenizer: Any
    recorder: Recorder


def failed_dir(run_dir: Path) -> Path:
    return run_dir.with_name(run_dir.name + ".failed")


def prepare_run_dir(run_dir: Path) -> None:
    """Start from an empty run dir; only a previous run's directory (it has run.json) is replaced."""
    if run_dir.exists():
        if not run_dir.is_dir() or (any(run_dir.iterdir()) and not (run_dir / RUN_FILE).exists()):
            raise TrainError(f"output dir {run_dir} exists and is not a training run directory; refusing to replace it")
        shutil.rmtree(run_dir)
    (run_dir / "adapter").mkdir(parents=True)
    (run_dir / "history").mkdir()


def _fail(run_dir: Path, run: dict[str, Any], status: str, error: str, started: float) -> None:
    run.update(status=status, error=error, finished_at=report.now(), duration_seconds=round(time.time() - started, 3))
    write_json(run_dir / RUN_FILE, run)
    target = failed_dir(run_dir)
    shutil.rmtree(target, ignore_errors=True)
    run_dir.rename(target)


def train(
    config: TrainConfig,
    train_path: str | Path,
    valid_path: str | Path | None,
    run_dir: str | Path,
    metrics_path: str | Path | None = None,
    echo: TextIO | None | bool = True,
    capture_stderr: bool = True,
    callbacks: Sequence[TrainingCallback] = (),
    resume_dir: str | Path | None = None,
    fresh: bool = False,
) -> TrainResult:
    """Fine-tune ``config.model`` on the train split and write the run dir (and metrics file).

    ``echo``: where train.log lines are echoed (True = the current sys.stdout, None = nowhere).
    ``callbacks`` (mlx-lm TrainingCallbacks) get every report after the run's own recorder.
    ``resume_dir`` (default ``<run_dir>.resume``) holds the resume state: a run continues from it when its
    params fingerprint matches (``fresh`` discards it), and deletes it once finished.
    """
    from compression_layer.blas import configure_threads

    run_dir = Path(run_dir)
    resume_dir = Path(resume_dir) if resume_dir is not None else default_resume_dir(run_dir)
    # Data parallel (mlx.launch): every rank trains, rank 0 alone writes the run dir, metrics and logs.
    main = rank() == 0
    if main:
        prepare_run_dir(run_dir)
    barrier()
    started = time.time()
    configure_threads()  # OpenBLAS threads: OPENBLAS_NUM_THREADS, else the project's default
    run: dict[str, Any] = {
        "status": "running",
        "started_at": report.now(),
        "finished_at": None,
        "git_sha": report.git_sha(),
        "packages": report.package_versions(),
        "device": report.device_info(),
        "blas": report.blas_info(),
        "params": config.to_dict(),
        "data": {"train": str(train_path), "valid": str(valid_path) if valid_path else None},
    }
    if main:
        write_json(run_dir / RUN_FILE, run)
    log = RunLog(run_dir / "train.log" if main else Path(os.devnull),
                 echo=(sys.stdout if echo is True else echo or None) if main else None)
    stderr = tee_stderr(run_dir / "train.err") if capture_stderr and main else contextlib.nullcontext()
    try:
        with stderr:
            result = _train(config, Path(train_path), Path(valid_path) if valid_path else None, run_dir, run, log,
                            started, callbacks, resume_dir=resume_dir, fresh=fresh)
    except KeyboardInterrupt:
        log("interrupted")
        _note_resume_state(log, resume_dir)
        log.close()
        if main:
            _fail(run_dir, run, "interrupted", "KeyboardInterrupt", started)
        raise
    except BaseException as exc:
        error = out_of_memory(exc) or exc
        log(f"failed: {error}")
        _note_resume_state(log, resume_dir)
        log.close()
        if main:
            _fail(run_dir, run, "failed", str(error).splitlines()[0] if str(error) else type(error).__name__, started)
        if error is not exc:
            raise error from exc
        raise
    log.close()
    if metrics_path is not None and main:
        write_json(metrics_path, result.metrics)
    if main:
        discard_resume_state(resume_dir)  # the run dir is complete: nothing left to resume
    return result


def _note_resume_state(log: RunLog, resume_dir: Path) -> None:
    state, _ = find_latest(resume_dir)
    if state is not None:
        log(f"resume state kept in {resume_dir}: rerun to continue from iteration {state.iteration}")


def _train(config: TrainConfig, train_path: Path, valid_path: Path | None, run_dir: Path, run: dict[str, Any],
           log: RunLog, started: float, callbacks: Sequence[TrainingCallback], resume_dir: Path,
           fresh: bool = False) -> TrainResult:
    import mlx.core as mx
    import numpy as np

    from compression_layer.train import data, model as modelmod
    from compression_layer.train import resume
    from compression_layer.train.loop import Progress, train_loop
    from compression_layer.train.stopping import ValidationWatch
    from compression_layer.train.optim import build_optimizer

    log(f"run {run_dir} | model {config.model} | git {run['git_sha']} | {run['device']['backend']} | "
        f"BLAS {run['blas'].get('name')}")
    # Data first: a missing or empty split fails before the (possibly slow) model load.
    train_rows = data.read_rows(train_path, "training")
    valid_rows = data.read_rows(valid_path, "validation") if valid_path is not None else None

    model, tokenizer, model_path = modelmod.load_base(config)
    world = mx.distributed.init()
    train_split = data.TokenizedSplit(train_rows, tokenizer, config.mask_prompt, "training")
    data.check_batch_size(train_split, config.batch_size, world.size())
    valid_batching = None
    if valid_rows is not None:
        valid_split = data.TokenizedSplit(valid_rows, tokenizer, config.mask_prompt, "validation")
        data.check_batch_size(valid_split, config.batch_size, world.size())
        valid_batching = data.Batching(valid_split, config.batch_size, config.max_seq_length, world.rank(), world.size())
    train_batching = data.Batching(train_split, config.batch_size, config.max_seq_length, world.rank(), world.size())

    np.random.seed(config.seed)
    mx.random.seed(config.seed)  # LoRA initialisation and dropout
    adapted = modelmod.apply_lora(model, config)
    trainable, total = modelmod.parameter_counts(model)
    optimizer = build_optimizer(config)
    adapter_dir = run_dir / "adapter"
    main = world.rank() == 0
    if main:
        modelmod.write_adapter_config(adapter_dir / "adapter_config.json", modelmod.adapter_config(config, model_path))

    layers = modelmod.layer_count(model)
    n_lora = layers if config.lora_layers == -1 else config.lora_layers
    log(f"{config.fine_tune_type}: last {n_lora} of {layers} layers, {adapted} modules, rank {config.lora_rank}, "
        f"scale {config.lora_scale:g}, dropout {config.lora_dropout:g} | trainable {trainable:,} of {total:,} "
        f"parameters ({100 * trainable / max(total, 1):.3f}%)")
    log(f"data: {len(train_split)} training rows ({int(train_split.lengths.sum()):,} tokens, "
        f"{len(train_batching)} batches of {config.batch_size}), "
        + (f"{len(valid_batching.split)} validation rows" if valid_batching else "no validation split")
        + f" | {config.optimizer} lr {config.learning_rate:g} {config.lr_schedule}, {config.iters} iters")
    if train_batching.truncated_rows:
        log(f"warning: {train_batching.truncated_rows} training rows are longer than max_seq_length="
            f"{config.max_seq_length} tokens and are truncated")
    if train_batching.skipped_rows:
        log(f"warning: {train_batching.skipped_rows} training rows have no completion token within max_seq_length="
            f"{config.max_seq_length} (prompt too long) and are left out")

    recorder = Recorder(log, run_dir / "history" if main else None, config.iters)
    watch = ValidationWatch(config.early_stopping_patience, config.early_stopping_min_delta)
    if watch.enabled and valid_batching is None:
        log("warning: early_stopping_patience is set but there is no validation split: early stopping is off")
    fingerprint = resume.fingerprint(config, model_path, train_path, valid_path, world.size())
    state, note = resume.choose(resume_dir, fingerprint, fresh)
    resume.check_ranks_agree(state, resume_dir, world)
    barrier()  # every rank has read the resume state before rank 0 discards an unused one
    if note:
        log(note)
    if main and state is None:
        resume.discard(resume_dir)
    start, grad_accum = None, None
    run["resume"] = {"resumed": False, "from_iteration": None, "state_dir": str(resume_dir), "note": note}
    if state is not None:
        try:
            mine = resume.restore_training(state, model, optimizer, world.rank())
        except (ValueError, KeyError, RuntimeError, OSError) as exc:  # e.g. a checkpoint of another mlx-lm
            raise TrainError(f"resume: cannot restore {state.path} ({str(exc).splitlines()[0]}); delete "
                             f"{resume_dir} or run the stage with --fresh to start from iteration 0") from None
        grad_accum = mine.grad_accum
        start = Progress(**{**state.info["progress"], "window_loss": mine.window_loss,
                            "window_tokens": mine.window_tokens})
        watch = ValidationWatch.from_dict(state.info["watch"], config.early_stopping_patience,
                                          config.early_stopping_min_delta)
        if main:
            resume.restore_run_dir(state, resume_dir, adapter_dir)
            log.restore(state.log_text())
        recorder.restore(state.info["recorder"], watch.best_loss if watch.best_iteration is not None else None,
                         watch.best_iteration)
        run["resume"].update(resumed=True, from_iteration=state.iteration, saved_at=state.info.get("saved_at"),
                             first_started_at=state.info.get("first_started_at"))
        log(f"resumed from iteration {state.iteration} of {config.iters} (checkpoint {state.path.name} saved "
            f"{state.info.get('saved_at')}): optimizer step {int(optimizer.step.item())}, learning rate "
            f"{optimizer.learning_rate.item():.3e}, {state.iteration} batches of the data order done")
    checkpointer = resume.Checkpointer(resume_dir, run_dir, fingerprint, recorder,
                                       run["resume"].get("first_started_at") or run["started_at"])
    loop = train_loop(model, optimizer, train_batching, valid_batching, config, adapter_dir, Chain(recorder, *callbacks),
                      start=start, grad_accum=grad_accum, watch=watch, save_state=checkpointer.save)

    duration = time.time() - started
    summary = recorder.summary()
    metrics = report.train_metrics(summary, loop.trained_tokens, loop.train_seconds, duration, loop.iterations)
    metrics["stopped_early"] = loop.stopped_early is not None
    if main:
        report.plot_loss_curve(recorder.train_rows, recorder.val_rows, run_dir / "loss_curve.png",
                               f"{config.model} | rank {config.lora_rank}, lr {config.learning_rate:g}")
    run.update(
        status="completed",
        finished_at=report.now(),
        duration_seconds=round(duration, 3),
        model_path=str(model_path),
        model_layers=layers,
        tokenizer_class=type(getattr(tokenizer, "_tokenizer", tokenizer)).__name__,
        trainable_parameters=trainable,
        total_parameters=total,
        optimizer_steps=loop.optimizer_steps,
        processes=world.size(),
        checkpoints=recorder.checkpoints,
        data={**run["data"], "train_rows": len(train_split), "train_batches": len(train_batching),
              "valid_rows": len(valid_batching.split) if valid_batching else 0, "val_batches": loop.val_batches,
              "truncated_train_rows": train_batching.truncated_rows,
              "skipped_train_rows": train_batching.skipped_rows},
        results=metrics,
        best_adapter=({"file": f"adapter/{BEST_ADAPTER_FILE}", "iteration": summary["best_val_iteration"],
                       "val_loss": summary["best_val_loss"]} if summary["best_val_iteration"] is not None else None),
        stopped_early=loop.stopped_early,
    )
    if main:
        write_json(run_dir / RUN_FILE, run)
    log(f"done: {loop.iterations} iters in {duration:.1f} s | final train_loss {metrics['final_train_loss']} | "
        f"best val_loss {metrics['best_val_loss']} at iter {metrics['best_val_iteration']} | "
        f"{metrics['tokens_per_sec']} tok/s | peak {metrics['peak_memory_gb']} GB")
    return TrainResult(run_dir=run_dir, metrics=metrics, run=run, model=model, optimizer=optimizer, tokenizer=tokenizer,
                       recorder=recorder)
