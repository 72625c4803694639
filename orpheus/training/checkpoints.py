"""Checkpoints: groups of variables (model, optimizer) in one NumPy archive, written atomically,
read with `allow_pickle=False` (no pickle on user files); and the run's exported model."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from orpheus.io import atomic_path, write_atomic_via
from orpheus.runs import read_state
from orpheus.training.options import TrainingError

LEGACY_BEST = "best.npz"  # the best epoch's weights, apart, in runs trained before 2026-12-06


def epoch_checkpoint(epoch: int | None) -> str | None:
    """Where epoch `epoch`'s checkpoint lies in a run folder ("checkpoints/epoch-0003.npz")."""
    return None if not epoch else f"checkpoints/epoch-{epoch:04d}.npz"


def save_checkpoint(path: Path, variables: dict[str, list]) -> None:
    """Write groups of variables (e.g. model, optimizer) to one .npz, atomically."""
    arrays: dict[str, np.ndarray] = {}
    names: dict[str, list[str]] = {}
    for group, group_vars in variables.items():
        names[group] = [getattr(v, "path", v.name) for v in group_vars]
        for i, v in enumerate(group_vars):
            arrays[f"{group}/{i:05d}"] = np.asarray(v.numpy())
    arrays["__names__"] = np.frombuffer(json.dumps(names).encode(), dtype=np.uint8)
    write_atomic_via(Path(path), lambda fh: np.savez(fh, **arrays))


def load_checkpoint(
    path: Path, variables: dict[str, list], *, optional: tuple[str, ...] = ()
) -> None:
    """Assign the arrays of a checkpoint to `variables`; any mismatch is a TrainingError.
    A group in `optional` that the file does not hold (an older checkpoint) is left as it is."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            stored = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise TrainingError(f"checkpoint {path} is missing") from None
    except (OSError, ValueError, EOFError) as exc:
        raise TrainingError(f"checkpoint {path} is corrupt ({type(exc).__name__})") from None
    except Exception as exc:  # zipfile.BadZipFile and friends
        raise TrainingError(f"checkpoint {path} is corrupt ({type(exc).__name__})") from None
    try:
        held = json.loads(stored["__names__"].tobytes()) if "__names__" in stored else {}
    except ValueError:
        raise TrainingError(f"checkpoint {path} is corrupt (its index)") from None
    for group, group_vars in variables.items():
        if group in optional and group not in held:
            continue
        count = sum(1 for k in stored if k.startswith(f"{group}/"))
        if count != len(group_vars):
            raise TrainingError(
                f"checkpoint {path} does not fit this model ({group}: {count} arrays stored, "
                f"{len(group_vars)} expected)"
            )
        for i, v in enumerate(group_vars):
            value = stored[f"{group}/{i:05d}"]
            if tuple(value.shape) != tuple(v.shape):
                raise TrainingError(
                    f"checkpoint {path} does not fit this model ({v.name}: {value.shape} stored, "
                    f"{tuple(v.shape)} expected)"
                )
            v.assign(value)


def load_weights(path: Path, model: keras.Model) -> None:
    """Load model weights only (e.g. the best-epoch weights) from a checkpoint file."""
    load_checkpoint(path, {"model": model.weights})


def export_model(
    model_fn: Callable[[], keras.Model],
    run_dir: Path,
    path: Path,
    export_as: Callable[[keras.Model], keras.Model] | None = None,
) -> None:
    """Save the model uncompiled (safe_mode loadable) with the best or else the last weights,
    made into `export_as(model)` when given (a head run saves its source model and head as one).

    The best weights are the checkpoint of the best epoch that state.json records: the state
    names it only once it is on disk, so a run interrupted at any point exports weights that
    its state vouches for.
    """
    model = model_fn()
    run_dir = Path(run_dir)
    state = read_state(run_dir) or {}
    best = epoch_checkpoint((state.get("tracker") or {}).get("best_epoch"))
    for weights in (best, f"checkpoints/{LEGACY_BEST}", state.get("checkpoint")):
        if weights and (run_dir / weights).is_file():
            load_weights(run_dir / weights, model)
            break
    if export_as is not None:
        model = export_as(model)
    with atomic_path(path) as tmp:  # Keras insists on a .keras name: save beside, then move
        staged = tmp.with_name(tmp.name + ".keras")
        try:
            model.save(staged)
            os.replace(staged, tmp)
        finally:
            staged.unlink(missing_ok=True)
