"""Run folders: the one module that creates, opens, lists and picks runs (no TensorFlow at import).

A run lives in `<workspace>/<model-training.log_dir>/<run-id>/` (log_dir is "runs" by default):

    config.json    the effective config, plus "frontend", "train" (the options it was started
                   with) and "recipe" (the features it eats: `orpheus.features.Recipe`)
    labels.json    the model's output tags, in order
    state.json     epochs done, optimizer step, callbacks' counters (written every epoch)
    metrics.json   "training" (history, best epoch) and, after `orpheus test`, "test"
    model.keras    the finished model (uncompiled, loadable in Keras safe mode)
    NOTE           present while a run is unfinished or failed: what happened, how to go on
    checkpoints/   epoch-NNNN.npz: the last few epochs and the best;  logs/  TensorBoard

The recipe is fixed when the run is created, from the TFRecords it trains on (their index's
feature parameters and format) and the training config (`window_length`), so `predict`, `test`
and `train --resume` read it here and never re-derive it from the workspace config. A run made
before runs recorded a recipe is read from its config (`tfrecords` section, `frontend`,
`model-training.window_length`), which is what it was trained with, and says so in one line.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orpheus import config as config_mod
from orpheus.audio import LogMelParams
from orpheus.errors import OrpheusError
from orpheus.features import Recipe
from orpheus.io import read_json, staged_folder, write_atomic, write_json_atomic
from orpheus.workspace import Workspace, is_workspace

if TYPE_CHECKING:
    import keras

MODEL_FILE = "model.keras"
LABELS_FILE = "labels.json"
CONFIG_FILE = "config.json"
STATE_FILE = "state.json"
METRICS_FILE = "metrics.json"
NOTE_FILE = "NOTE"
PREFIX = "run/"  # manifest names: run/<id>
_NOTED: set[Path] = set()  # legacy runs whose note was printed


@dataclass(frozen=True)
class Run:
    """An existing run folder: its paths, and what it recorded (read when first asked for)."""

    dir: Path

    @property
    def id(self) -> str:
        return self.dir.name

    @property
    def name(self) -> str:
        """The run's manifest name, `run/<id>`."""
        return PREFIX + self.id

    model_path = property(lambda self: self.dir / MODEL_FILE)
    labels_path = property(lambda self: self.dir / LABELS_FILE)
    config_path = property(lambda self: self.dir / CONFIG_FILE)
    state_path = property(lambda self: self.dir / STATE_FILE)
    metrics_path = property(lambda self: self.dir / METRICS_FILE)
    note_path = property(lambda self: self.dir / NOTE_FILE)

    @property
    def finished(self) -> bool:
        """It holds a model (training ended, or an earlier attempt did)."""
        return self.model_path.is_file()

    @cached_property
    def _saved(self) -> dict:
        data = read_json(self.config_path)
        if not isinstance(data, dict) or "frontend" not in data:
            raise OrpheusError(f"{self.config_path} is corrupt (no 'frontend')")
        return data

    @cached_property
    def config(self) -> dict:
        """The effective config the run was trained with (validated, defaults filled)."""
        sections = {
            k: v for k, v in self._saved.items() if k not in ("frontend", "train", "recipe")
        }
        return config_mod.validate(sections, source=str(self.config_path))

    @property
    def frontend(self) -> str:
        return str(self._saved["frontend"])

    @property
    def train_options(self) -> dict:
        """The options `orpheus train` started it with (epochs, schedule, loop, precision...)."""
        return dict(self._saved.get("train", {}))

    @cached_property
    def recipe(self) -> Recipe:
        """The features the model eats: recorded at creation, else read from its config."""
        if "recipe" in self._saved:
            try:
                return Recipe.from_dict(self._saved["recipe"])
            except (TypeError, KeyError) as exc:
                raise OrpheusError(f"{self.config_path}: bad 'recipe' ({exc})") from None
        # Once per run and process (predict reads it twice); never to stdout when stderr is
        # closed (print(file=None) would write there, into the user's JSON).
        if self.dir not in _NOTED and sys.stderr is not None:
            _NOTED.add(self.dir)
            print(
                f"note: run {self.id} predates recorded recipes: its features are read from its "
                f"config ({self.config_path})",
                file=sys.stderr,
            )
        return legacy_recipe(self.frontend, self.config)

    @cached_property
    def labels(self) -> list[str]:
        labels = read_json(self.labels_path)
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise OrpheusError(f"{self.labels_path} is corrupt (not a list of tags)")
        return labels

    def state(self) -> dict:
        """state.json ({} before the first epoch ends)."""
        return read_state(self.dir) or {}

    def metrics(self) -> dict:
        try:
            data = json.loads(self.metrics_path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def require_config(self) -> Run:
        """Itself, once checked to hold its config (all a run needs to be resumed); else a
        one-line error."""
        if not self.config_path.is_file():
            raise OrpheusError(f"no run {self.id} in {self.dir.parent} (no config.json)")
        return self

    def require_model(self) -> Run:
        """Itself, once checked to hold model, labels and config; else a one-line error."""
        if not self.dir.is_dir():
            raise OrpheusError(f"no run {self.name}: {self.dir} does not exist")
        missing = [
            p.name for p in (self.model_path, self.labels_path, self.config_path) if not p.is_file()
        ]
        if missing:
            raise OrpheusError(
                f"run {self.name} has no {', '.join(missing)} (training has not finished?)",
                hint=f"finish it with `orpheus train --resume {self.id}`",
            )
        return self


def recipe_for(frontend: str, mel: LogMelParams, window_seconds: float) -> Recipe:
    """The recipe of a run on records of `frontend` with features `mel` (the records' index),
    in windows of `window_seconds` (model-training.window_length): normalised, evenly placed."""
    return Recipe.from_seconds(frontend, mel, window_seconds)


def legacy_recipe(frontend: str, cfg: dict) -> Recipe:
    """The recipe of a run made before runs recorded one: its validated config holds the
    records' features (`tfrecords`) and the window length it trained with."""
    settings = config_mod.settings(cfg)
    rec = settings.tfrecords
    mel = LogMelParams(rec.sample_rate, rec.n_fft, rec.hop_length, rec.n_mels)
    return recipe_for(frontend, mel, settings.model_training.window_length)


# -- where runs are --------------------------------------------------------------------------


def runs_dir(where: Workspace | str | Path) -> Path:
    """The folder runs go into: the workspace's `model-training.log_dir`. A folder that is not a
    workspace (a bare tree of runs) holds them under the default log_dir."""
    if not isinstance(where, Workspace):
        if not is_workspace(Path(where)):
            return Path(where) / config_mod.settings().model_training.log_dir
        where = Workspace.open(where)
    return where.path(where.settings.model_training.log_dir)


def find(where: Workspace | str | Path, run: str) -> Run:
    """The run `run` (an id, or `run/<id>`): where the manifest recorded it, else in log_dir."""
    run_id = run.removeprefix(PREFIX)
    if isinstance(where, Workspace) or is_workspace(Path(where)):
        ws = where if isinstance(where, Workspace) else Workspace.open(where)
        folder = ws.artifact_path(PREFIX + run_id)
        if folder is not None:
            return Run(folder)
    return Run(runs_dir(where) / run_id)


def list_runs(ws: Workspace | None, *, finished: bool = True) -> list[Run]:
    """The workspace's registered runs, oldest first (by creation time, then manifest order);
    with `finished`, only those that hold a model."""
    if ws is None:
        return []
    found = []
    for position, (name, entry) in enumerate(ws.manifest()["artifacts"].items()):
        if name.startswith(PREFIX):
            folder = ws.artifact_path(name)
            if folder is not None and (not finished or (folder / MODEL_FILE).is_file()):
                found.append((entry.get("created") or "", position, Run(folder)))
    return [run for _, _, run in sorted(found, key=lambda t: t[:2])]


def latest(ws: Workspace | None) -> Run | None:
    """The most recently registered run that holds a model; None when there is none."""
    runs = list_runs(ws)
    return runs[-1] if runs else None


def open_run(where: str | Path, run: str | None = None) -> Run:
    """A run holding a model: `open_run(run_folder)`, or `open_run(workspace_root, run_id)`."""
    return (Run(Path(where)) if run is None else find(where, run)).require_model()


# -- writing -----------------------------------------------------------------------------------


def create_run(
    runs_dir: Path,
    run_id: str,
    *,
    config: dict,
    labels: list[str],
    recipe: Recipe | None = None,
) -> Path:
    """Make `runs_dir/run_id` with the effective config (and `recipe`, under "recipe"), the
    labels, and a NOTE until training finishes.

    The folder is built under a hidden name and renamed into place whole, so a run killed while
    it is made leaves no half-made run that `--resume` would then trip over.
    """
    run_dir = Path(runs_dir) / run_id
    if run_dir.exists():
        raise OrpheusError(
            f"run {run_id} already exists in {runs_dir}",
            hint=f"pick another --run-name, or continue it with `--resume {run_id}`",
        )
    with staged_folder(run_dir) as staged:
        write_note(staged, "created; training has not finished (resume with --resume if it died)")
        saved = {**config, "recipe": recipe.to_dict()} if recipe is not None else config
        write_json_atomic(staged / CONFIG_FILE, saved)
        write_json_atomic(staged / LABELS_FILE, list(labels))
        (staged / "checkpoints").mkdir()
        (staged / "logs").mkdir()
    return run_dir


def read_state(run_dir: Path) -> dict | None:
    """A run's state.json; None before it has one."""
    path = Path(run_dir) / STATE_FILE
    if not path.exists():
        return None
    return read_json(path)


def write_note(run_dir: Path, text: str) -> None:
    """The run's NOTE: a time stamp and what a user should know (unfinished, failed...)."""
    stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    write_atomic(Path(run_dir) / NOTE_FILE, f"{stamp} {text}\n")


def merge_metrics(run_dir: Path, key: str, value: Any) -> None:
    """Set `key` ("training", "test") in the run's metrics.json, keeping the other keys."""
    run = Run(Path(run_dir))
    write_json_atomic(run.metrics_path, {**run.metrics(), key: value})


def record_test(ws: Workspace, run: Run, results: dict) -> None:
    """`orpheus test`'s results into metrics.json and the run's manifest summary."""
    merge_metrics(run.dir, "test", results)
    entry = ws.entry(run.name) or {}
    ws.register(
        run.name,
        run.dir,
        params=entry.get("params", {"frontend": run.frontend}),
        inputs={"tfrecords": f"tfrecords/{run.frontend}"},
        command=entry.get("command"),
        summary={
            **entry.get("summary", {}),
            "test ROC-AUC (macro)": rounded(results["roc_auc_macro"]),
            "test PR-AUC (macro)": rounded(results["pr_auc_macro"]),
        },
    )


def rounded(value: float | None) -> float | None:
    """A metric as the manifest shows it: 4 decimals, None kept."""
    return None if value is None else round(float(value), 4)


# -- the model ---------------------------------------------------------------------------------


def load_model(run: Run) -> keras.Model:
    """The run's model.keras, uncompiled, in Keras safe mode (no code from the file runs);
    a corrupt or foreign file is a one-line error naming it. Imports Keras (and TensorFlow)."""
    run.require_model()
    import keras

    try:
        return keras.models.load_model(run.model_path, safe_mode=True, compile=False)
    except Exception as exc:  # a corrupt or foreign file: say which, never a traceback
        raise OrpheusError(
            f"cannot load {run.model_path}: {type(exc).__name__}: {exc}".splitlines()[0]
        ) from None
