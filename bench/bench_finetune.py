"""A few hundred songs: training from scratch vs fine-tuning musicnn vs a head on its embeddings.

On one workspace (the example corpus through `tfrecords build`; the 200-track one `orpheus demo`
makes has ~124 train, 13 valid and 35 test tracks) and its one test split, each method runs with
SEEDS seeds; each run is then evaluated as `orpheus test` does (song level: the mean over
evenly spaced windows covering the track). Reported per method, as mean ± standard deviation
over seeds: macro ROC-AUC and PR-AUC over the labels, the same over the five decade tags
(60s-00s, which the example config leaves out and this benchmark adds back), and the training
wall time.

- scratch: `orpheus train` with the workspace's config (the example's Pons log-mel model), in a
  subprocess; its wall time includes starting Python and importing TensorFlow (~5 s).
- fine-tune: `finetune.finetune` from msd-musicnn, front end frozen, FT_EPOCHS x FT_STEPS steps.
- head-*: `heads.train_head` on msd-musicnn's cached embeddings; the one-off cache (computed on
  the first head run, reused by the others) is timed on its own row.

Goal (issue 18): fine-tuning or a head beats scratch on macro PR-AUC in at most a fifth of its
training time. The workspace is copied from ORPHEUS_BENCH_FINETUNE_WS (default: demo-ws, made by
`orpheus demo demo-ws`) into ORPHEUS_BENCH_DATA, without its runs and embeddings.

    ORPHEUS_BENCH_FINETUNE_WS=demo-ws python bench/bench_finetune.py
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = Path(os.environ.get("ORPHEUS_BENCH_FINETUNE_WS", ROOT / "demo-ws"))
DATA = Path(os.environ.get("ORPHEUS_BENCH_DATA", Path(tempfile.gettempdir()) / "orpheus-bench"))
SEEDS = int(os.environ.get("ORPHEUS_BENCH_FINETUNE_SEEDS", 3))
# scratch trains for the workspace config's epochs (the demo's: 8, one-cycle) unless this is set
SCRATCH_EPOCHS = os.environ.get("ORPHEUS_BENCH_FINETUNE_SCRATCH_EPOCHS")
FT_EPOCHS = int(os.environ.get("ORPHEUS_BENCH_FINETUNE_FT_EPOCHS", 2))
FT_STEPS = int(os.environ.get("ORPHEUS_BENCH_FINETUNE_FT_STEPS", 10))
DECADES = ["60s", "70s", "80s", "90s", "00s"]
HEADS = [("linear", "window"), ("mlp", "window"), ("mlp", "song")]
SOURCE_MODEL = "msd-musicnn"


def prepare(source: Path = SOURCE) -> Path:
    """A private copy of the workspace, its tag selection with the decade tags added back."""
    from orpheus.workspace import Workspace

    dest = DATA / "finetune-ws"
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("runs", "embeddings"))
    ws = Workspace.open(dest)
    for name in [n for n in ws.names() if n.startswith(("run/", "embeddings/"))]:
        ws.forget(name)
    cfg = ws.config
    vocabulary = json.loads((dest / "tfrecords/log-mel/index.json").read_text())["vocabulary"]
    cfg["tags"]["without"] = [t for t in cfg["tags"]["without"] if t not in DECADES]
    cfg["tags"]["with"] = [t for t in DECADES if t in vocabulary]
    ws.save_config(cfg)
    return dest


def orpheus(ws: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "orpheus", "-q", "-w", str(ws), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"orpheus {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def scratch(ws: Path, seed: int) -> tuple[str, float]:
    run = f"scratch-{seed}"
    orpheus(ws, "config", "set", "model-training.seed", str(seed))
    start = time.perf_counter()
    epochs = ["--epochs", SCRATCH_EPOCHS] if SCRATCH_EPOCHS else []
    orpheus(ws, "train", "--run-name", run, *epochs)
    return run, time.perf_counter() - start


def finetuned(ws: Path, seed: int) -> tuple[str, float]:
    from orpheus import finetune
    from orpheus.training import PrintReporter
    from orpheus.workspace import Workspace

    run = f"finetune-{seed}"
    start = time.perf_counter()
    finetune.finetune(
        Workspace.open(ws),
        SOURCE_MODEL,
        freeze="frontend",
        run_id=run,
        epochs=FT_EPOCHS,
        steps_per_epoch=FT_STEPS,
        seed=seed,
        reporter=PrintReporter(),
    )
    return run, time.perf_counter() - start


def head(ws: Path, seed: int, kind: str, level: str) -> tuple[str, float]:
    from orpheus import heads
    from orpheus.training import PrintReporter
    from orpheus.workspace import Workspace

    run = f"head-{kind}-{level}-{seed}"
    start = time.perf_counter()
    heads.train_head(
        Workspace.open(ws),
        SOURCE_MODEL,
        kind=kind,
        level=level,
        run_id=run,
        seed=seed,
        reporter=PrintReporter(),
    )
    return run, time.perf_counter() - start


def cache_seconds(ws: Path) -> float:
    """Compute msd-musicnn's embedding cache once (what the first head run would do)."""
    from orpheus import embeddings
    from orpheus.workspace import Workspace

    w = Workspace.open(ws)
    start = time.perf_counter()
    _, reused = embeddings.cached(w, embeddings.open_source(w, SOURCE_MODEL))
    assert not reused
    return time.perf_counter() - start


def scores(ws: Path, run: str) -> dict[str, float]:
    """`orpheus test`'s song-level macro AUCs (`evaluation.evaluate_run`), over all labels and
    over the decade tags."""
    from orpheus import evaluation, runs
    from orpheus.workspace import Workspace

    w = Workspace.open(ws)
    result = evaluation.evaluate_run(w, runs.find(w, run)).results
    decades = [result["per_tag"][t] for t in DECADES if t in result["per_tag"]]

    def mean(key: str) -> float:
        values = [d[key] for d in decades if d[key] is not None]
        return statistics.fmean(values) if values else float("nan")

    return {
        "roc": result["roc_auc_macro"],
        "pr": result["pr_auc_macro"],
        "decade roc": mean("roc_auc"),
        "decade pr": mean("pr_auc"),
    }


def _spread(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.3f} ± {sd:.3f}"


def main() -> list[dict]:
    from rich.console import Console
    from rich.table import Table

    ws = prepare()
    methods = {
        "scratch (Pons log-mel)": lambda s: scratch(ws, s),
        f"fine-tune {SOURCE_MODEL} (front end frozen)": lambda s: finetuned(ws, s),
        **{
            f"head {kind} ({level} level)": (lambda s, k=kind, lv=level: head(ws, s, k, lv))
            for kind, level in HEADS
        },
    }
    cache = cache_seconds(ws)
    found: dict[str, list[dict]] = {}
    for name, train in methods.items():
        for seed in range(SEEDS):
            run, seconds = train(seed)
            found.setdefault(name, []).append({**scores(ws, run), "seconds": seconds})
    table = Table(title=f"{SEEDS} seeds each, song level, test split of {ws}")
    columns = ("roc", "pr", "decade roc", "decade pr", "seconds")
    heads_ = ("macro ROC-AUC", "macro PR-AUC", "decades ROC-AUC", "decades PR-AUC", "train s")
    table.add_column("method")
    for title in heads_:
        table.add_column(title, justify="right")
    rows = []
    base = found["scratch (Pons log-mel)"]
    base_pr = statistics.fmean(r["pr"] for r in base)
    base_s = statistics.fmean(r["seconds"] for r in base)
    for name, runs in found.items():
        cells = [_spread([r[c] for r in runs]) for c in columns]
        table.add_row(name, *cells)
        pr, secs = (
            statistics.fmean(r["pr"] for r in runs),
            statistics.fmean(r["seconds"] for r in runs),
        )
        rows.append(
            {
                "figure": f"{name}: macro PR-AUC (mean of {SEEDS} seeds) vs scratch; "
                + ", ".join(f"{t} {c}" for t, c in zip(heads_, cells, strict=True)),
                "orpheus": pr,
                "baseline": base_pr,
                "ratio": secs / base_s,
                "goal": "PR-AUC > scratch's at <= 0.2x its training time (ratio: time)",
            }
        )
    table.add_row(f"({SOURCE_MODEL} embedding cache, once)", "", "", "", "", f"{cache:.1f}")
    Console().print(table)
    return rows


if __name__ == "__main__":
    main()
