"""`orpheus train`: train the Pons et al. 2018 tagger on the TFRecords, into runs/<id>."""

from __future__ import annotations

import re
from typing import Annotated

import typer

from orpheus.commands._common import console, err_console, info, options, progress, workspace
from orpheus.errors import EXIT_PARTIAL, OrpheusError


def command(
    ctx: typer.Context,
    frontend: Annotated[
        str | None,
        typer.Option(help="waveform or log-mel (default: tfrecords.format in config.json)."),
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(help="Epochs (default: model-training.epochs).")
    ] = None,
    gpus: Annotated[
        list[str] | None,
        typer.Option(help="GPU indices for MirroredStrategy, e.g. --gpus 0 1 (default: all)."),
    ] = None,
    steps_per_epoch: Annotated[
        int | None, typer.Option(help="Steps per epoch (default: one pass over the train split).")
    ] = None,
    schedule: Annotated[
        str | None,
        typer.Option(
            help="Learning rate: constant, cyclic or one-cycle (default: model-training.schedule)."
        ),
    ] = None,
    find_lr: Annotated[
        bool, typer.Option("--find-lr", help="Run an LR range test (plot + suggestion) only.")
    ] = False,
    custom: Annotated[
        bool, typer.Option("--custom", help="Use the custom training loop instead of Keras fit.")
    ] = False,
    resume: Annotated[
        str | None, typer.Option(help="Continue the run with this id where it stopped.")
    ] = None,
    run_name: Annotated[
        str | None, typer.Option(help="Run id (default: <frontend>-<UTC time>).")
    ] = None,
    worker_hosts: Annotated[
        list[str] | None,
        typer.Option(help="host:port of every worker, for MultiWorkerMirroredStrategy."),
    ] = None,
    worker_index: Annotated[
        int | None, typer.Option(help="This machine's position in --worker-hosts.")
    ] = None,
    summary: Annotated[
        bool, typer.Option("--summary", help="Print the model's layers and parameters, and stop.")
    ] = False,
    precision: Annotated[
        str | None,
        typer.Option(
            help="float32, or mixed: float16 on a GPU, bfloat16 on the CPU, float32 weights and"
            " output (default: float32, or the run's own with --resume)."
        ),
    ] = None,
    jit: Annotated[bool, typer.Option("--jit", help="Compile the training step with XLA.")] = False,
    cache: Annotated[
        bool,
        typer.Option("--cache", help="Keep the parsed TFRecords in memory after the first epoch."),
    ] = False,
    head: Annotated[
        str | None,
        typer.Option(help="Train a linear or mlp head on a pretrained model's embeddings."),
    ] = None,
    embeddings: Annotated[
        str | None,
        typer.Option(help="With --head: msd-musicnn, mtt-musicnn or a run (default msd-musicnn)."),
    ] = None,
    head_level: Annotated[
        str | None,
        typer.Option(
            help="With --head: window (each window's embedding, the default) or song (its mean)."
        ),
    ] = None,
    init: Annotated[
        str | None,
        typer.Option(help="Fine-tune msd-musicnn, mtt-musicnn or a run, with a new output layer."),
    ] = None,
    freeze: Annotated[
        str | None,
        typer.Option(
            help="With --init: what stays fixed: frontend (the default), all-but-head or none."
        ),
    ] = None,
    extra: Annotated[list[str] | None, typer.Argument(hidden=True)] = None,
) -> None:
    """Train the tagger (waveform or log-mel front end); each run gets a folder runs/<id>."""
    from orpheus import runs
    from orpheus.training import lifecycle

    gpu_ids, hosts = _spread_lists(gpus, worker_hosts, extra)
    lifecycle.check(
        lifecycle.TrainRequest(
            epochs=epochs, steps_per_epoch=steps_per_epoch, run_name=run_name, resume=resume
        )
    )
    # a head or fine-tuning run, new or resumed, is trained by orpheus.heads / orpheus.finetune
    if any((head, embeddings, head_level, init, freeze)) or (
        resume and lifecycle.transfer_method(runs.find(workspace(ctx), resume))
    ):
        scratch_only = {
            "--frontend": frontend,
            "--gpus": gpu_ids,
            "--schedule": schedule is not None,
            "--custom": custom,
            "--find-lr": find_lr,
            "--summary": summary,
            "--precision": precision,
            "--jit": jit,
            "--cache": cache,
            "--worker-hosts": hosts,
            "--worker-index": worker_index is not None,
        }
        for flag, value in scratch_only.items():
            if value:
                raise OrpheusError(f"{flag} does not apply to head and fine-tuning runs")
        _transfer(
            ctx,
            head=head,
            source=embeddings,
            level=head_level,
            init=init,
            freeze=freeze,
            run_name=run_name,
            resume=resume,
            epochs=epochs,
            steps=steps_per_epoch,
        )
        return
    request = lifecycle.TrainRequest(
        frontend=frontend,
        epochs=epochs,
        gpus=gpu_ids,
        steps_per_epoch=steps_per_epoch,
        schedule=schedule,
        custom=custom,
        resume=resume,
        run_name=run_name,
        worker_hosts=hosts,
        worker_index=worker_index,
        precision=precision,
        jit=jit,
        cache=cache,
        find_lr=find_lr,
        summary=summary,
    )
    lifecycle.check(request)
    ws = workspace(ctx)
    plan = lifecycle.prepare(ws, request, message=lambda text: info(ctx, text))
    if summary:
        _print_summary(plan.model_fn(), plan.frontend, plan.labels)
        return
    if find_lr:
        info(
            ctx, "LR range test: learning rate from 1e-7 up, one step each, until the loss diverges"
        )
        run_dir, found = lifecycle.find_lr(plan)
        _print_lr_suggestion(run_dir, found, plan.options.optimizer)
        return
    info(ctx, plan.describe())
    with progress(ctx) as bar:
        result = lifecycle.train(ws, plan, reporter=_Reporter(ctx, bar))
    if not plan.chief:
        return
    best = (
        f"best {result.monitor} {result.best:.4f} (epoch {result.best_epoch})"
        if result.best
        else ""
    )
    console.print(f"run {plan.run_id}: {result.status} after {result.epochs_done} epochs; {best}")
    console.print(f"model: {result.model_path}")
    if result.status.startswith("failed"):
        raise OrpheusError(
            f"training {result.status}",
            hint=f"lower the learning rate; the run can go on with `--resume {plan.run_id}`",
            exit_code=EXIT_PARTIAL,
        )


def _transfer(
    ctx: typer.Context,
    *,
    head: str | None,
    source: str | None,
    level: str | None,
    init: str | None,
    freeze: str | None,
    run_name: str | None,
    resume: str | None,
    epochs: int | None,
    steps: int | None,
) -> None:
    """--head / --init, or --resume of such a run: learn from a pretrained model
    (`orpheus.heads`, `orpheus.finetune`)."""
    import datetime as dt

    if init and (head or source or level):
        raise OrpheusError(
            "--init fine-tunes, --head/--embeddings/--head-level train a head: choose one"
        )
    new_head = not (init or resume)
    if new_head and freeze:
        raise OrpheusError("--freeze goes with --init: a head leaves its source model as it is")
    if new_head and steps:
        raise OrpheusError(
            "--steps-per-epoch goes with --init: a head takes one pass over its embeddings"
            " per epoch"
        )
    if resume and run_name and run_name != resume:
        raise OrpheusError("--resume continues a run under its own name: drop --run-name")

    from orpheus import finetune, heads, pretrained

    ws = workspace(ctx)
    run_id = (
        resume
        or run_name
        or f"{'finetune' if init else 'head'}-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}"
    )
    with progress(ctx) as bar:
        reporter = _Reporter(ctx, bar)
        if resume:
            outcome = finetune.resume(
                ws,
                resume,
                epochs=epochs,
                reporter=reporter,
                head=head,
                level=level,
                embeddings=source,
                init=init,
                freeze=freeze,
                steps_per_epoch=steps,
            )
        elif init:
            outcome = finetune.finetune(
                ws,
                init,
                freeze=freeze or "frontend",
                run_id=run_id,
                epochs=epochs,
                steps_per_epoch=steps,
                reporter=reporter,
            )
        else:
            outcome = heads.train_head(
                ws,
                source or pretrained.DEFAULT,
                kind=head or "linear",
                level=level or "window",
                run_id=run_id,
                epochs=epochs,
                reporter=reporter,
            )
    result = outcome.result
    console.print(
        f"run {run_id}: {result.status} after {result.epochs_done} epochs; "
        f"best {result.monitor} {result.best or 0:.4f}"
    )
    console.print(f"model: {result.model_path}")
    if result.status.startswith("failed"):
        raise OrpheusError(
            f"training {result.status}",
            hint=f"the run can go on with `--resume {run_id}`",
            exit_code=EXIT_PARTIAL,
        )


# -- option handling ------------------------------------------------------------------------------


def _spread_lists(
    gpus: list[str] | None, hosts: list[str] | None, extra: list[str] | None
) -> tuple[list[int] | None, list[str] | None]:
    """Accept `--gpus 0 1` and `--worker-hosts a:1 b:2` (click reads only the first value of each:
    the rest arrive as extra arguments, told apart by their shape), and comma-separated lists."""
    gpu_tokens = [t for g in gpus or [] for t in re.split(r"[,\s]+", g) if t]
    host_tokens = [t for h in hosts or [] for t in re.split(r"[,\s]+", h) if t]
    for token in extra or []:
        if gpus and token.isdigit():
            gpu_tokens.append(token)
        elif hosts and ":" in token:
            host_tokens.append(token)
        else:
            raise OrpheusError(f"unexpected argument {token!r}", hint="see `orpheus train --help`")
    try:
        gpu_ids = [int(t) for t in gpu_tokens]
    except ValueError:
        raise OrpheusError(f"--gpus takes GPU indices, got {' '.join(gpu_tokens)}") from None
    return gpu_ids or None, host_tokens or None


# -- rendering ------------------------------------------------------------------------------------


def _print_summary(model, frontend: str, labels: list[str]) -> None:
    lines: list[str] = []
    model.summary(print_fn=lambda line, **_: lines.append(line), line_length=100)
    console.print("\n".join(lines), markup=False)
    trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
    console.print(
        f"{frontend} model, {len(labels)} tags, input {tuple(model.input_shape[1:])}: "
        f"{trainable:,} trainable parameters"
    )


class _Reporter:
    """Training progress as a rich bar (count, rate, the epoch's ETA) plus the whole run's ETA
    and one line per epoch."""

    def __init__(self, ctx: typer.Context, bar):
        from orpheus.training.progress import TrainingEta

        self.ctx, self.bar, self.task = ctx, bar, None
        self.steps_seen: int | None = None  # an epoch's length, once one epoch has run
        self.eta = TrainingEta()

    def message(self, text: str) -> None:
        info(self.ctx, text)

    def epoch_begin(self, epoch: int, epochs: int, steps: int | None) -> None:
        if self.task is not None:
            self.bar.remove_task(self.task)
        self.epochs = epochs
        self.label = f"epoch {epoch + 1}/{epochs}"
        self.task = self.bar.add_task(self.label, total=steps or self.steps_seen)
        self.eta.epoch_begin(epoch, epochs, steps or self.steps_seen)

    def step(self, step: int, logs: dict[str, float]) -> None:
        self.eta.step()
        loss = logs.get("loss")
        text = f"{self.label} loss {loss:.4f}" if loss is not None else self.label
        left = self.eta.seconds_left()
        if left is not None:
            text += f", run ends in {int(left) // 60}:{int(left) % 60:02d}"
        self.bar.update(self.task, completed=step + 1, description=text)

    def epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        self.eta.epoch_end()
        self.steps_seen = int(self.bar.tasks[-1].completed) if self.bar.tasks else None
        if options(self.ctx).quiet:
            return
        keys = ("loss", "roc_auc", "pr_auc", "val_loss", "val_roc_auc", "val_pr_auc")
        shown = "  ".join(f"{k} {logs[k]:.4f}" for k in keys if k in logs)
        err_console.print(
            f"epoch {epoch + 1}/{self.epochs}: {shown}  lr {logs['learning_rate']:.3g}"
        )


def _print_lr_suggestion(run_dir, found: dict, optimizer: dict) -> None:
    console.print(
        f"suggested learning rate: {found['suggestion']:.3g} "
        f"(loss lowest at {found['min_loss_lr']:.3g}); plot: {run_dir / 'lr_find.png'}"
    )
    console.print(
        f"use it with `orpheus config set model-training.optimizer "
        f'\'{{"name": "{optimizer.get("name", "Adam")}", '
        f'"learning_rate": {found["suggestion"]:.3g}}}\'`'
    )
