"""The training loop: mlx-lm's compiled LoRA step (tuner.trainer.train) in a loop this package controls.

The step, loss, gradient accumulation and reports are mlx-lm's; the loop is ours so that the data order
has its own seeded generator, validation uses the same batches every time and runs *after* a step (the
val loss at iteration N is the loss of the adapter saved at N), and checkpointing is a separate module.
Reports go to a ``TrainingCallback`` with the keys mlx-lm uses, so mlx-lm's callbacks work here too.
A resumed run (train.resume) restores the model, ``optimizer.state`` and ``mx.random.state`` (the compiled
step's state) before the loop starts, and hands it the saved ``Progress``; the data order is replayed from
the seed. Validation losses go through a ``ValidationWatch`` (best adapter, early stopping).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import mlx.core as mx
import mlx.nn as nn
from mlx.nn.utils import average_gradients
from mlx.utils import tree_map
from mlx_lm.tuner.callbacks import TrainingCallback
from mlx_lm.tuner.trainer import default_loss

from compression_layer.train.checkpoint import BEST_ADAPTER_FILE, adapter_weights, save_adapter, save_weights
from compression_layer.train.config import TrainConfig
from compression_layer.train.data import Batching, train_batches, val_batch_indices
from compression_layer.train.errors import TrainError
from compression_layer.train.resume import gather_ranks
from compression_layer.train.stopping import ValidationWatch


@dataclass
class Progress:
    """What the loop carries between iterations besides the model, optimizer and RNG (a resume restores it)."""

    iteration: int = 0  # iterations done = training batches consumed
    trained_tokens: int = 0
    train_seconds: float = 0.0
    # Sums over the current report window (since the last train-loss report).
    window_loss: float = 0.0
    window_tokens: int = 0
    window_steps: int = 0
    window_seconds: float = 0.0


@dataclass
class LoopResult:
    iterations: int  # the last iteration trained (fewer than config.iters after an early stop)
    optimizer_steps: int
    trained_tokens: int
    train_seconds: float  # time in training steps only (validation excluded), as mlx-lm's tok/s
    val_batches: int  # validation batches per evaluation
    stopped_early: dict | None = None  # ValidationWatch.stopped: when and why


class _GradCheckpoint:
    """mlx-lm's grad_checkpoint patches the block class's __call__; undo it afterwards so it does not
    leak into other models of the same class in this process."""

    def __init__(self, layer: nn.Module, enabled: bool):
        self.cls = type(layer)
        self.original = self.cls.__call__
        self.enabled = enabled
        self.layer = layer

    def __enter__(self):
        if self.enabled:
            from mlx_lm.tuner.trainer import grad_checkpoint

            grad_checkpoint(self.layer)
        return self

    def __exit__(self, *exc):
        self.cls.__call__ = self.original


def _clear_cache(threshold: int) -> None:
    if threshold and mx.get_cache_memory() > threshold:
        mx.clear_cache()


def evaluate(model: nn.Module, batching: Batching, indices: list[int]) -> float:
    """Mean loss per target token over the given validation batches (mlx-lm's evaluate, fixed batches)."""
    model.eval()
    total = mx.array(0.0)
    ntokens = mx.array(0)
    for index in indices:
        losses, toks = default_loss(model, *batching.make(index))
        total += losses * toks
        ntokens += toks
        mx.eval(total, ntokens)
    total = mx.distributed.all_sum(total, stream=mx.cpu)
    ntokens = mx.distributed.all_sum(ntokens, stream=mx.cpu)
    model.train()
    return (total / ntokens).item()


def train_loop(
    model: nn.Module,
    optimizer,
    train: Batching,
    valid: Batching | None,
    config: TrainConfig,
    adapter_dir: Path,
    callback: TrainingCallback,
    start: Progress | None = None,
    grad_accum=None,
    watch: ValidationWatch | None = None,
    save_state: Callable[..., object] | None = None,
) -> LoopResult:
    """Train up to ``config.iters`` iterations; report, validate and checkpoint at the configured steps.

    A resumed run passes the restored ``start`` progress and ``grad_accum`` (model, optimizer and RNG are
    already restored). ``watch`` keeps the best adapter (written to best_adapters.safetensors) and stops
    early; ``save_state(iteration, model, optimizer, ranks, progress, watch)`` runs at every checkpoint
    (on rank 0; ``ranks`` is resume.gather_ranks' per-rank values).
    """
    world = mx.distributed.init()
    world_size, rank = world.size(), world.rank()
    accum = config.grad_accumulation_steps
    val_indices = val_batch_indices(valid, config.val_batches, config.seed) if valid is not None else []
    progress = start or Progress()
    watch = watch or ValidationWatch(config.early_stopping_patience, config.early_stopping_min_delta)

    with _GradCheckpoint(model.layers[0], config.grad_checkpoint):
        loss_value_and_grad = nn.value_and_grad(model, default_loss)
        state = [model.state, optimizer.state, mx.random.state]

        @partial(mx.compile, inputs=state, outputs=state)
        def step(batch, prev_grad, do_update):
            (lvalue, toks), grad = loss_value_and_grad(model, *batch)
            if prev_grad is not None:
                grad = tree_map(lambda x, y: x + y, grad, prev_grad)
            if do_update:
                grad = average_gradients(grad)
                if accum > 1:
                    grad = tree_map(lambda x: x / accum, grad)
                optimizer.update(model, grad)
                grad = None
            return lvalue, toks, grad

        def validate(iteration: int) -> bool:
            """Validation loss at ``iteration``; keeps the best adapter; True when early stopping says stop."""
            tic = time.perf_counter()
            val_loss = evaluate(model, valid, val_indices)
            verdict = watch.observe(iteration, val_loss)
            if verdict.best and rank == 0:
                save_weights(adapter_dir / BEST_ADAPTER_FILE, adapter_weights(model))
            callback.on_val_loss_report(
                {"iteration": iteration, "val_loss": val_loss, "val_time": time.perf_counter() - tic}
            )
            return verdict.stop

        mx.reset_peak_memory()
        model.train()
        if val_indices and progress.iteration == 0:
            validate(0)  # the base model's loss, before any update
        # Report-window sums; a resumed run continues the window its checkpoint fell in.
        steps, window_time = progress.window_steps, progress.window_seconds
        losses = mx.array(progress.window_loss, mx.float32) if steps else 0
        n_tokens = mx.array(progress.window_tokens, mx.int32) if steps else 0
        trained_tokens, total_time = progress.trained_tokens, progress.train_seconds
        last = progress.iteration

        def report(it: int) -> None:
            nonlocal losses, n_tokens, steps, window_time, trained_tokens, total_time
            train_loss = mx.distributed.all_sum(losses, stream=mx.cpu).item() / (steps * world_size)
            if not math.isfinite(train_loss):
                # Every later step would be NaN too: stop now rather than write a ruined adapter.
                raise TrainError(
                    f"training diverged: train loss is {train_loss} at iteration {it} "
                    f"(lower learning_rate, or check max_seq_length against the rows' prompt lengths)"
                )
            n_tokens = int(mx.distributed.all_sum(n_tokens, stream=mx.cpu).item())
            trained_tokens += n_tokens
            total_time += window_time
            callback.on_train_loss_report(
                {
                    "iteration": it,
                    "train_loss": train_loss,
                    "learning_rate": optimizer.learning_rate.item(),
                    "iterations_per_second": steps / window_time,
                    "tokens_per_second": n_tokens / window_time,
                    "trained_tokens": trained_tokens,
                    "peak_memory": mx.get_peak_memory() / 1e9,
                    "cache_memory": mx.get_cache_memory() / 1e9,
                }
            )
            losses, n_tokens, steps, window_time = 0, 0, 0, 0.0

        batches = train_batches(train, config.seed, start=progress.iteration)
        for it in range(progress.iteration + 1, config.iters + 1):
            batch = next(batches)
            tic = time.perf_counter()
            lvalue, toks, grad_accum = step(batch, grad_accum, it % accum == 0)
            losses += lvalue
            n_tokens += toks
            steps += 1
            mx.eval(state, losses, n_tokens, grad_accum)
            _clear_cache(config.clear_cache_threshold)
            window_time += time.perf_counter() - tic
            last = it

            if it % config.steps_per_report == 0 or it == config.iters:
                report(it)

            stop = False
            if val_indices and (it % config.steps_per_eval == 0 or it == config.iters):
                stop = validate(it)
                if stop and steps:
                    report(it)  # the train loss of the last, partial report window

            if it % config.save_every == 0:
                # Per-rank values (RNG key, accumulated gradient, window sums) reach rank 0 by a collective.
                ranks = None if save_state is None or stop else gather_ranks(grad_accum, losses, n_tokens)
                if rank == 0:
                    path = save_adapter(adapter_dir, model, it)
                    on_save = getattr(callback, "on_checkpoint", None)
                    if on_save is not None:
                        on_save(it, path)
                    if ranks is not None:
                        window = Progress(it, trained_tokens, total_time, 0.0, 0, steps, window_time)
                        save_state(it, model, optimizer, ranks, dataclasses.asdict(window), watch.to_dict())
            if stop:
                on_stop = getattr(callback, "on_early_stop", None)
                if on_stop is not None:
                    on_stop(watch.stopped)
                break

        if rank == 0:
            save_adapter(adapter_dir, model)
    return LoopResult(
        iterations=last,
        optimizer_steps=int(optimizer.step.item()) if hasattr(optimizer, "step") else last // accum,
        trained_tokens=trained_tokens,
        train_seconds=total_time,
        val_batches=len(val_indices),
        stopped_early=watch.stopped,
    )
