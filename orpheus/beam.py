"""Apache Beam, Orpheus's optional distributed runner: the one place that imports it and turns
`--beam-options "..."` into a pipeline, for `tfrecords build` and `predict` alike.

Beam is the `[beam]` extra: without it, a one-line error says how to install it.
"""

from __future__ import annotations

import logging
import shlex
from typing import Any

from orpheus.errors import OrpheusError

INSTALL_HINT = "pip install 'orpheus-tagger[beam]'"


class _NoCloudClientNotice(logging.Filter):
    """Drops the warning Beam's import logs on the root logger when Google Cloud's client
    libraries are absent ("apitools not found, and bigquery client libraries are not
    available ..."): Orpheus never uses them, so for its users the line is only noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("apitools not found")


def import_beam() -> Any:
    """The `apache_beam` module, or a one-line error naming the extra to install."""
    root = logging.getLogger()
    if not any(isinstance(f, _NoCloudClientNotice) for f in root.filters):
        root.addFilter(_NoCloudClientNotice())
    try:
        import apache_beam
    except ImportError:
        raise OrpheusError("the beam runner needs Apache Beam", hint=INSTALL_HINT) from None
    return apache_beam


def pipeline(beam_options: str | None) -> Any:
    """A `beam.Pipeline` from a shell-quoted option string, e.g.
    `"--runner=DataflowRunner --project=p --region=europe-west1"`; none means the DirectRunner.
    """
    beam = import_beam()
    from apache_beam.options.pipeline_options import PipelineOptions

    try:  # Beam checks the runner name when the pipeline is made: a bad one is the user's
        return beam.Pipeline(options=PipelineOptions(shlex.split(beam_options or "")))
    except ValueError as exc:
        raise OrpheusError(
            f"bad --beam-options: {exc}", hint='e.g. --beam-options "--runner=DirectRunner"'
        ) from None
