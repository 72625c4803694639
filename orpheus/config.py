"""The workspace configuration: schema, defaults, load / validate / set.

The sections and keys are the original project's (`model`, `model-training`, `tags`, `tfrecords`),
so its three shipped JSON configs load unchanged, plus `paths` (input files, relative to the
workspace), `silence` and `tags-cleaning` (the thresholds of those stages). The defaults are the
original `log-mel-spectrogram_config.json` with its absolute paths made workspace-relative.

`scan.checkpoint_files` / `scan.checkpoint_seconds` and `silence.checkpoint_tracks` /
`silence.checkpoint_seconds` say how often those commands save their progress while they run:
every that many files (tracks) or seconds, whichever comes first; a killed run loses at most that.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

from orpheus.errors import OrpheusError

NUMBER = (int, float)
OPT_NUMBER = (int, float, type(None))
OPT_INT = (int, type(None))
OPT_STR = (str, type(None))
OPT_LIST = (list, type(None))

# section -> key -> (accepted types, default). A section whose spec is None accepts any keys.
SCHEMA: dict[str, dict[str, tuple[tuple[type, ...] | type, Any]]] = {
    "paths": {
        "audio_root": (OPT_STR, None),
        "msd_summary": (OPT_STR, None),
        "lastfm_db": (OPT_STR, None),
        "duplicates": (OPT_STR, None),
        "mismatches": (OPT_STR, None),
    },
    "silence": {
        "min_size": (int, 200000),
        "filter_trim_length": (NUMBER, 15.0),
        "filter_tot_silence": (NUMBER, 3.0),
        "filter_max_silence": (NUMBER, 1.0),
        "top_db": (NUMBER, 60),
        "checkpoint_tracks": (int, 500),
        "checkpoint_seconds": (NUMBER, 5.0),
    },
    "scan": {
        "checkpoint_files": (int, 20000),
        "checkpoint_seconds": (NUMBER, 5.0),
    },
    "tags-cleaning": {
        "threshold": (int, 2000),
        "sub_threshold": (int, 10),
        "val": (NUMBER, 0.0),
        "lists": (OPT_STR, None),
        "combine": (list, []),
        "drop": (list, []),
        "min_tracks": (int, 10),  # passthrough: fewer positives can hardly be learnt or scored
    },
    "model": {
        "n_dense_units": (int, 500),
        "n_filters": (int, 16),
        "n_backend_filters": (int, 512),
    },
    "model-training": {
        "optimizer": (dict, {"name": "Adam", "learning_rate": 0.001}),
        "batch_size": (int, 64),
        "iterations": (OPT_INT, None),
        "epochs": (int, 10),
        "schedule": (str, "constant"),  # constant, cyclic or one-cycle (train --schedule)
        "seed": (int, 0),
        "interleave_cycle_length": (int, 2),
        "interleave_block_length": (int, 1),
        "early_stop_patience": (OPT_INT, None),
        "early_stop_min_delta": (OPT_NUMBER, None),
        "reduceLRoP_patience": (OPT_INT, None),
        "reduceLRoP_min_delta": (OPT_NUMBER, None),
        "reduceLRoP_factor": (OPT_NUMBER, None),
        "reduceLRoP_min_lr": (OPT_NUMBER, None),
        "log_dir": (str, "runs"),
        "shuffle": (bool, True),
        "shuffle_buffer_size": (int, 1000),
        "split": (list, [80, 10, 10]),
        "window_length": (NUMBER, 15),
        "window_random": (bool, True),
    },
    "tags": {
        "top": (OPT_INT, 50),
        "with": (list, []),
        "without": (list, []),
        "merge": (OPT_LIST, None),
        "kinds": (dict, {}),  # tag -> genre|mood|era|instrument|vocals|other (--write-tags)
    },
    "tfrecords": {
        "n_mels": (int, 96),
        "n_tags": (int, 155),
        "sample_rate": (int, 16000),
        "n_fft": (int, 512),
        "hop_length": (int, 256),
        "shards": (OPT_INT, None),
        "format": (str, "log-mel"),
        "compression": (OPT_STR, None),
    },
}

# Keys whose values must also satisfy a range or choice; checked after the type.
CHOICES = {
    ("tfrecords", "format"): ("log-mel", "waveform"),
    ("tfrecords", "compression"): (None, "GZIP"),
}
POSITIVE = {
    ("silence", "checkpoint_tracks"),
    ("silence", "checkpoint_seconds"),
    ("scan", "checkpoint_files"),
    ("scan", "checkpoint_seconds"),
    ("tags-cleaning", "min_tracks"),
    ("model", "n_dense_units"),
    ("model", "n_filters"),
    ("model", "n_backend_filters"),
    ("model-training", "batch_size"),
    ("model-training", "epochs"),
    ("model-training", "window_length"),
    ("model-training", "shuffle_buffer_size"),
    ("tfrecords", "n_mels"),
    ("tfrecords", "sample_rate"),
    ("tfrecords", "n_fft"),
    ("tfrecords", "hop_length"),
}


class ConfigError(OrpheusError):
    """A config file or value that does not fit the schema."""


def defaults() -> dict:
    """A fresh copy of the default configuration."""
    return {
        section: {key: copy.deepcopy(default) for key, (_, default) in keys.items()}
        for section, keys in SCHEMA.items()
    }


def load(path: Path) -> dict:
    """Read, validate and complete (with defaults) a config file."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ({exc})") from None
    return validate(raw, source=str(path))


def validate(raw: Any, source: str = "config") -> dict:
    """Check `raw` against the schema and return it completed with defaults.

    Sections may be missing (defaults fill them); unknown sections or keys, wrong types and
    out-of-range values raise ConfigError naming the source and the dotted key.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a JSON object")
    merged = defaults()
    for section, values in raw.items():
        if section not in SCHEMA:
            raise ConfigError(
                f"{source}: unknown section '{section}'", hint=f"known: {', '.join(SCHEMA)}"
            )
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: '{section}' must be an object")
        for key, value in values.items():
            merged[section][key] = _checked(section, key, value, source)
    _check_split(merged["model-training"]["split"], source)
    return merged


def _checked(section: str, key: str, value: Any, source: str) -> Any:
    spec = SCHEMA[section].get(key)
    dotted = f"{section}.{key}"
    if spec is None:
        raise ConfigError(
            f"{source}: unknown key '{dotted}'",
            hint=f"keys of '{section}': {', '.join(SCHEMA[section])}",
        )
    types, _ = spec
    accepted = types if isinstance(types, tuple) else (types,)
    # bool is an int in Python; only accept it where bool is asked for.
    is_bool_for_number = isinstance(value, bool) and bool not in accepted
    if not isinstance(value, accepted) or is_bool_for_number:
        wanted = " or ".join("null" if t is type(None) else t.__name__ for t in accepted)
        raise ConfigError(f"{source}: '{dotted}' must be {wanted}, got {json.dumps(value)}")
    if (section, key) in CHOICES and value not in CHOICES[(section, key)]:
        options = ", ".join(json.dumps(c) for c in CHOICES[(section, key)])
        raise ConfigError(f"{source}: '{dotted}' must be one of {options}, got {json.dumps(value)}")
    if (section, key) in POSITIVE and value <= 0:
        raise ConfigError(f"{source}: '{dotted}' must be > 0, got {json.dumps(value)}")
    if dotted == "model-training.optimizer" and not isinstance(value.get("name"), str):
        raise ConfigError(f"{source}: 'model-training.optimizer.name' must be a string")
    return value


def _check_split(split: list, source: str) -> None:
    if not 1 <= len(split) <= 3 or not all(
        isinstance(v, NUMBER) and not isinstance(v, bool) and v >= 0 for v in split
    ):
        raise ConfigError(
            f"{source}: 'model-training.split' must be 1 to 3 non-negative numbers, got {split}"
        )
    if sum(split) != 100:
        raise ConfigError(
            f"{source}: 'model-training.split' must add up to 100 (percent), got {sum(split)}"
        )


def get(cfg: dict, dotted: str) -> Any:
    """Value at a dotted key such as `model-training.batch_size` (or a whole section)."""
    node: Any = cfg
    for part in _split_key(dotted):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"unknown key '{dotted}'")
        node = node[part]
    return node


def set_value(cfg: dict, dotted: str, text: str, source: str = "config") -> dict:
    """A copy of `cfg` with `dotted` set to `text` parsed as JSON (bare words are strings)."""
    parts = _split_key(dotted)
    if len(parts) < 2:
        raise ConfigError(f"'{dotted}' is a section; set one of its keys, e.g. '{dotted}.KEY'")
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text
    updated = copy.deepcopy(cfg)
    node = updated
    for part in parts[:-1]:
        if part not in node or not isinstance(node[part], dict):
            raise ConfigError(f"unknown key '{dotted}'")
        node = node[part]
    node[parts[-1]] = value
    return validate(updated, source=source)


def _split_key(dotted: str) -> list[str]:
    parts = [p for p in dotted.split(".") if p]
    if not parts:
        raise ConfigError("empty config key")
    return parts


# -- typed view ---------------------------------------------------------------------------------
# The JSON file keeps the original project's section and key names; code reads these frozen
# dataclasses instead of strings. `Settings.from_dict(cfg)` takes a validated config (defaults
# already filled from SCHEMA, the one place defaults live) and maps `model-training` to
# `model_training`, `tags-cleaning` to `tags_cleaning` and `tags.with` to `tags.with_`.


@dataclasses.dataclass(frozen=True)
class PathsSettings:
    audio_root: str | None
    msd_summary: str | None
    lastfm_db: str | None
    duplicates: str | None
    mismatches: str | None


@dataclasses.dataclass(frozen=True)
class SilenceSettings:
    min_size: int
    filter_trim_length: float
    filter_tot_silence: float
    filter_max_silence: float
    top_db: float
    checkpoint_tracks: int
    checkpoint_seconds: float


@dataclasses.dataclass(frozen=True)
class ScanSettings:
    checkpoint_files: int
    checkpoint_seconds: float


@dataclasses.dataclass(frozen=True)
class TagsCleaningSettings:
    threshold: int
    sub_threshold: int
    val: float
    lists: str | None
    combine: list
    drop: list
    min_tracks: int


@dataclasses.dataclass(frozen=True)
class ModelSettings:
    n_dense_units: int
    n_filters: int
    n_backend_filters: int


@dataclasses.dataclass(frozen=True)
class TrainingSettings:
    optimizer: dict
    batch_size: int
    iterations: int | None
    epochs: int
    schedule: str
    seed: int
    interleave_cycle_length: int
    interleave_block_length: int
    early_stop_patience: int | None
    early_stop_min_delta: float | None
    reduceLRoP_patience: int | None  # noqa: N815 - the config file's key
    reduceLRoP_min_delta: float | None  # noqa: N815
    reduceLRoP_factor: float | None  # noqa: N815
    reduceLRoP_min_lr: float | None  # noqa: N815
    log_dir: str
    shuffle: bool
    shuffle_buffer_size: int
    split: list
    window_length: float
    window_random: bool


@dataclasses.dataclass(frozen=True)
class TagsSettings:
    top: int | None
    with_: list
    without: list
    merge: list | None
    kinds: dict


@dataclasses.dataclass(frozen=True)
class RecordsSettings:
    n_mels: int
    n_tags: int
    sample_rate: int
    n_fft: int
    hop_length: int
    shards: int | None
    format: str
    compression: str | None


@dataclasses.dataclass(frozen=True)
class Settings:
    """The whole config, typed. Build it with `Settings.from_dict(validated_cfg)`."""

    paths: PathsSettings
    silence: SilenceSettings
    scan: ScanSettings
    tags_cleaning: TagsCleaningSettings
    model: ModelSettings
    model_training: TrainingSettings
    tags: TagsSettings
    tfrecords: RecordsSettings

    @classmethod
    def from_dict(cls, cfg: dict) -> Settings:
        """The typed view of a config dict; missing sections or keys take SCHEMA's defaults.

        >>> Settings.from_dict({}).model_training.batch_size
        64
        >>> Settings.from_dict({"tags": {"with": ["jazz"]}}).tags.with_
        ['jazz']
        """
        merged = defaults()
        for section, values in cfg.items():
            merged.setdefault(section, {}).update(values)
        sections = {}
        for field in dataclasses.fields(cls):
            section = _SECTION_NAMES.get(field.name, field.name)
            values = {_KEY_NAMES.get(k, k): v for k, v in merged[section].items()}
            sections[field.name] = _SECTION_TYPES[field.name](**values)
        return cls(**sections)


def settings(cfg: dict | None = None) -> Settings:
    """`Settings.from_dict(cfg)`; the defaults when `cfg` is None."""
    return Settings.from_dict(cfg or {})


_SECTION_NAMES = {"tags_cleaning": "tags-cleaning", "model_training": "model-training"}
_KEY_NAMES = {"with": "with_"}
_SECTION_TYPES = {
    "paths": PathsSettings,
    "silence": SilenceSettings,
    "scan": ScanSettings,
    "tags_cleaning": TagsCleaningSettings,
    "model": ModelSettings,
    "model_training": TrainingSettings,
    "tags": TagsSettings,
    "tfrecords": RecordsSettings,
}
