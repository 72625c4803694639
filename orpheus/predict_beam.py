"""Tagging on Apache Beam (`predict --runner beam`): the local runner's per-file work, spread
over a Beam pipeline's workers, for corpora beyond one machine.

    Create(paths) -> Reshuffle -> ParDo(TagFn) -> WriteToText(PREFIX, ".jsonl")

`Reshuffle` breaks the fusion with `Create`, so the files spread over every worker. `TagFn`
loads ONE model per worker in `setup()` (a bundled name, or a run folder resolved before the
pipeline starts) and turns each file into the local runner's record with the same function,
`predicting.tag_record`; a file that cannot be tagged gives its `skipped` record, so the shards
account for every input. The shards are JSON Lines, one record per line:
`PREFIX-00000-of-00002.jsonl`, ... Workers need the audio paths and the model, never the
workspace: on a cluster both must be on a filesystem every worker reads (NFS, a bucket mounted
with gcsfuse, ...).

The counts of the end-of-run summary come back through Beam's metrics, which every runner
aggregates, so the shards are never read back.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from orpheus import beam as orpheus_beam
from orpheus import predicting

beam = orpheus_beam.import_beam()  # the extra's one-line error when Beam is missing

NAMESPACE = "orpheus.predict"
TAGGED, AUDIO_MS, LOADED = "tagged", "audio_ms", "models_loaded"
NOTE, SKIPPED = "note:", "skipped:"  # counter name prefixes: "note:silent", "skipped:too short"


class TagFn(beam.DoFn):
    """Paths in, JSON records out; the model is loaded once per worker, not per bundle."""

    def __init__(self, model: predicting.ModelRef, options: predicting.Options):
        self.model = model
        self.options = options

    def setup(self) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        self.tagger = self.model.load()
        self.unreported = True  # metrics can only be counted while a bundle runs

    def process(self, path: str) -> Iterator[str]:
        if self.unreported:
            beam.metrics.Metrics.counter(NAMESPACE, LOADED).inc()
            self.unreported = False
        seconds: list[float] = []
        rec = predicting.tag_record(
            self.tagger, path, self.options, on_tagged=lambda _p, r, _k: seconds.append(r.duration)
        )
        count(rec, sum(seconds))
        yield json.dumps(rec, ensure_ascii=False)


def count(rec: dict, seconds: float = 0.0) -> None:
    """Add one record to the pipeline's counters, as `predicting.Summary.add` counts it."""
    one = predicting.Summary()
    one.add(rec, seconds)
    counters = {
        TAGGED: one.tagged,
        AUDIO_MS: round(one.seconds * 1000),
        **{NOTE + k: n for k, n in one.notes.items()},
        **{SKIPPED + k: n for k, n in one.skipped.items()},
    }
    for name, n in counters.items():
        if n:
            beam.metrics.Metrics.counter(NAMESPACE, name).inc(n)


def _skipped_json(rec: dict) -> str:
    count(rec)
    return json.dumps(rec, ensure_ascii=False)


@dataclass
class BeamRun:
    """A finished pipeline: its summary, how many workers loaded the model, and its shards."""

    summary: predicting.Summary
    workers: int
    shards: str  # a glob: PREFIX-*-of-*.jsonl

    def line(self) -> str:
        return (
            f"{self.summary.line()}; the model loaded on {self.workers} worker(s); "
            f"records in {self.shards}"
        )


def output_prefix(output: str | Path) -> str:
    """The shards' prefix as the user typed it: `Path` folds a URL's `//`, Beam needs it back.

    >>> output_prefix(Path("gs://bucket/tags")), output_prefix(Path("out/tags"))
    ('gs://bucket/tags', 'out/tags')
    """
    return re.sub(r"^([a-z][a-z0-9+.-]*):/(?=[^/])", r"\1://", str(output))


def run(
    inputs: predicting.Inputs,
    model: predicting.ModelRef,
    output: str | Path,
    options: predicting.Options | None = None,
    beam_options: str | None = None,
) -> BeamRun:
    """Tag `inputs` in a Beam pipeline into `output`-NNNNN-of-NNNNN.jsonl and wait for it.

    The paths that name nothing to tag (`inputs.problems`) go into the shards as skipped
    records, as `predicting.tag_paths` yields them first.
    """
    prefix = output_prefix(output)
    summary = predicting.Summary(ignored=inputs.ignored)
    p = orpheus_beam.pipeline(beam_options)
    tagged = (
        p
        | "Paths" >> beam.Create([str(f) for f in inputs.files])
        | "Spread" >> beam.Reshuffle()
        | "Tag" >> beam.ParDo(TagFn(model, options or predicting.Options()))
    )
    problems = [predicting.skipped(where, reason) for where, reason in inputs.problems]
    unreadable = p | "Problems" >> beam.Create(problems) | "Count" >> beam.Map(_skipped_json)
    _ = (
        (tagged, unreadable)
        | "Records" >> beam.Flatten()
        | "Write" >> beam.io.WriteToText(prefix, file_name_suffix=".jsonl")
    )
    outcome = p.run()
    outcome.wait_until_finish()
    summary.ended = time.perf_counter()
    query = beam.metrics.MetricsFilter().with_namespace(NAMESPACE)
    counts: Counter = Counter()
    for counter in outcome.metrics().query(query)["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        counts[counter.key.metric.name] += value or 0
    summary.tagged = counts[TAGGED]
    summary.seconds = counts[AUDIO_MS] / 1000
    for name, n in counts.items():
        for start, into in ((NOTE, summary.notes), (SKIPPED, summary.skipped)):
            if name.startswith(start):
                into[name.removeprefix(start)] = n
    return BeamRun(summary, counts[LOADED], f"{prefix}-*-of-*.jsonl")
