"""The workspace: a folder with `config.json`, `manifest.json` and every artifact the stages make.

The manifest records, for each artifact, what a reproducible-pipeline tool records for a stage
output (DVC's `dvc.lock` is the model): path, fingerprint, time, command line, parameters, and
the fingerprints of its inputs. From that, `state()` says ok / stale / missing. Every write of
the manifest happens under an exclusive lock, goes through a temp file and a rename, and keeps
the previous version as `manifest.json.bak`, so an interrupted or concurrent command never
leaves it half-written.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import shlex
import shutil
import stat
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orpheus import config as config_mod
from orpheus.errors import OrpheusError
from orpheus.io import write_json_atomic

CONFIG_FILE = "config.json"
MANIFEST_FILE = "manifest.json"
BACKUP_SUFFIX = ".bak"
LOCK_FILE = ".orpheus.lock"
ENV_VAR = "ORPHEUS_WORKSPACE"
MANIFEST_VERSION = 1

# The pipeline in order: artifact name (a trailing /* matches a family), how to make it.
PIPELINE: list[tuple[str, str]] = [
    ("scan", "orpheus scan AUDIO_ROOT"),
    ("wrangle", "orpheus wrangle"),
    ("silence", "orpheus silence"),
    ("clean-tags", "orpheus tags clean"),
    ("tfrecords/*", "orpheus tfrecords build"),
    ("run/*", "orpheus train"),
]
# The pipeline of a workspace whose labels came from `orpheus labels import` (no scan, no
# wrangle: the import writes the track table that silence reads).
LABELS, LABELS_DB = "labels", "labels-db"  # the track table and the tag db it writes
LABEL_PIPELINE: list[tuple[str, str]] = [
    (LABELS, "orpheus labels import --from SOURCE PATH"),
    *PIPELINE[2:],
]
LASTFM = "lastfm"  # the label source of the MSD path

OK, STALE, MISSING = "ok", "stale", "missing"


class WorkspaceError(OrpheusError):
    """The workspace is missing, unreadable or corrupt."""


def fingerprint(path: Path) -> str | None:
    """Content fingerprint of a file (size + BLAKE2b) or a folder (its files' names, sizes, mtimes).

    Folders are fingerprinted by metadata, not content, so that a folder of a million previews
    costs one `stat` per file. Symlinks are followed (see `walk_tree`): a file that changes
    behind a link changes the fingerprint. None when the path does not exist.
    """
    path = Path(path)
    if path.is_file():
        h = hashlib.blake2b(digest_size=16)
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        return f"file:{path.stat().st_size}:{h.hexdigest()}"
    if path.is_dir():
        h = hashlib.blake2b(digest_size=16)
        count = 0
        for entry in sorted(walk_tree(path), key=lambda e: e.rel):
            name = entry.rel.rsplit("/", 1)[-1]
            if name.startswith(".") and name.endswith(".tmp"):
                continue
            if entry.problem is None:
                h.update(f"{entry.rel}\0{entry.stat.st_size}\0{entry.stat.st_mtime_ns}\n".encode())
            else:
                h.update(f"{entry.rel}\0!\n".encode())
            count += 1
        return f"dir:{count}:{h.hexdigest()}"
    return None


@dataclass(frozen=True)
class TreeEntry:
    """A file under a walked folder, or an entry that could not be walked and why."""

    rel: str  # relative to the root, '/'-separated, through symlinked folders
    stat: os.stat_result | None  # of the entry (a link's target); None when it cannot be stat'ed
    problem: str | None  # None for a readable regular file; a folder here was already walked


def walk_tree(root: Path) -> Iterator[TreeEntry]:
    """Every regular file under `root`, following symlinked folders, and every entry it could not
    walk, with the reason: an OS error (a dangling link, a link loop, an unreadable folder), a
    file that is not regular (a FIFO must never be opened), or a folder already walked.

    A tree that links to folders on other disks is walked through the links, but each real
    folder only once (by device and inode), so a link back to an ancestor ends there. Real
    folders are walked before links, so a folder reached both ways keeps its real path.
    """
    root_stat = os.stat(root)
    seen = {(root_stat.st_dev, root_stat.st_ino): "."}
    folders = [(os.fspath(root), "")]  # (path, rel prefix); listed depth first
    links: list[tuple] = []  # (path, rel, key, stat) of symlinked folders, followed afterwards
    while folders or links:
        if not folders:
            path, rel, key, st = links.pop(0)
            if key in seen:
                yield TreeEntry(rel, st, f"links to '{seen[key]}', a folder already walked")
            else:
                seen[key] = rel
                folders.append((path, rel + "/"))
            continue
        path, prefix = folders.pop()
        try:
            with os.scandir(path) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            if not prefix:
                raise
            yield TreeEntry(prefix[:-1], None, f"cannot list the folder: {_reason(exc)}")
            continue
        for entry in reversed(entries):  # the stack pops them back in name order
            rel = prefix + entry.name
            try:
                st = entry.stat()
            except OSError as exc:
                target = f" (link to '{os.readlink(entry.path)}')" if entry.is_symlink() else ""
                yield TreeEntry(rel, None, f"{_reason(exc)}{target}")
                continue
            if stat.S_ISDIR(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if entry.is_symlink():
                    links.append((entry.path, rel, key, st))
                elif key in seen:  # a bind mount of an ancestor
                    yield TreeEntry(rel, st, f"'{seen[key]}' again, a folder already walked")
                else:
                    seen[key] = rel
                    folders.append((entry.path, rel + "/"))
            elif stat.S_ISREG(st.st_mode):
                yield TreeEntry(rel, st, None)
            else:
                yield TreeEntry(rel, st, "not a regular file")


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _stat(path: Path) -> list[int] | None:
    """Size and mtime of a file, the cheap check done before re-hashing it."""
    try:
        st = Path(path).stat()
    except FileNotFoundError:
        return None
    return [st.st_size, st.st_mtime_ns] if Path(path).is_file() else None


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def command_line() -> str:
    """The exact command line of this process, as a user would retype it."""
    argv = sys.argv[1:]
    return " ".join(["orpheus", *(shlex.quote(a) for a in argv)])


def is_workspace(path: Path) -> bool:
    return (Path(path) / CONFIG_FILE).is_file() and (Path(path) / MANIFEST_FILE).is_file()


def find(path: Path | str | None = None) -> Path:
    """The workspace root: `path`, else $ORPHEUS_WORKSPACE, else the cwd or one of its parents."""
    if path is None and os.environ.get(ENV_VAR):
        path = os.environ[ENV_VAR]
    if path is not None:
        root = Path(path).expanduser()
        if not is_workspace(root):
            raise WorkspaceError(
                f"{root} is not an Orpheus workspace (no {CONFIG_FILE} / {MANIFEST_FILE})",
                hint=f"create one with `orpheus init {root}`",
            )
        return root.resolve()
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if is_workspace(candidate):
            return candidate
    raise WorkspaceError(
        "not inside an Orpheus workspace",
        hint="run `orpheus init PATH`, then pass `-w PATH`, set ORPHEUS_WORKSPACE or cd into it",
    )


class Workspace:
    """An open workspace: its config, its manifest and the artifacts it records."""

    _held = threading.local()

    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self._config: dict | None = None

    # -- opening and creating -------------------------------------------------------------

    @classmethod
    def open(cls, path: Path | str | None = None) -> Workspace:
        ws = cls(find(path))
        ws.manifest()  # fail early, with a clear message, on a corrupt manifest
        return ws

    @classmethod
    def create(cls, path: Path | str, *, force: bool = False, cfg: dict | None = None) -> Workspace:
        """Make a workspace at `path`. An existing one is refused unless `force`, which rewrites
        config.json (keeping the old one as config.json.bak) and never deletes data."""
        root = Path(path).expanduser()
        if root.exists() and not root.is_dir():
            raise WorkspaceError(f"{root} exists and is not a folder")
        existing = (root / CONFIG_FILE).exists() or (root / MANIFEST_FILE).exists()
        if existing and not force:
            raise WorkspaceError(
                f"{root} is already an Orpheus workspace",
                hint="use `--force` to rewrite its config.json (its data and manifest are kept)",
            )
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WorkspaceError(f"cannot create {root}: {exc.strerror}") from None
        if not os.access(root, os.W_OK):
            raise WorkspaceError(f"cannot write to {root}: permission denied")
        ws = cls(root)
        with ws.lock():
            if (root / CONFIG_FILE).exists():
                shutil.copy2(root / CONFIG_FILE, root / (CONFIG_FILE + BACKUP_SUFFIX))
            ws.save_config(cfg if cfg is not None else config_mod.defaults())
            if not (root / MANIFEST_FILE).exists():
                write_json_atomic(root / MANIFEST_FILE, _empty_manifest())
        return ws

    # -- config -----------------------------------------------------------------------------

    @property
    def config(self) -> dict:
        if self._config is None:
            self._config = config_mod.load(self.root / CONFIG_FILE)
        return self._config

    @property
    def settings(self) -> config_mod.Settings:
        """The config as typed sections (`ws.settings.model_training.batch_size`)."""
        return config_mod.Settings.from_dict(self.config)

    def save_config(self, cfg: dict) -> None:
        checked = config_mod.validate(cfg, source=str(self.root / CONFIG_FILE))
        write_json_atomic(self.root / CONFIG_FILE, checked)
        self._config = checked

    def path(self, rel: str | Path) -> Path:
        """Absolute path of `rel` inside the workspace."""
        return self.root / rel

    def input_path(self, key: str) -> Path | None:
        """The input file named by `paths.<key>` in the config, resolved against the root."""
        value = self.config["paths"].get(key)
        if value is None:
            return None
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.root / p)

    # -- locking ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive lock on the workspace (re-entrant within one process)."""
        held: dict[Path, int] = self._held.__dict__.setdefault("depth", {})
        if held.get(self.root):
            held[self.root] += 1
            try:
                yield
            finally:
                held[self.root] -= 1
            return
        fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            held[self.root] = 1
            try:
                yield
            finally:
                held[self.root] = 0
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    # -- manifest ---------------------------------------------------------------------------

    def manifest(self) -> dict:
        """The manifest as a dict; a corrupt file is an error, never silently replaced."""
        path = self.root / MANIFEST_FILE
        backup = path.with_name(MANIFEST_FILE + BACKUP_SUFFIX)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or not isinstance(data.get("artifacts"), dict):
                raise ValueError("no 'artifacts' object")
        except FileNotFoundError:
            raise WorkspaceError(f"{path} is missing", hint="run `orpheus init --force`") from None
        except (ValueError, UnicodeDecodeError) as exc:
            hint = (
                f"restore the last good copy: cp '{backup}' '{path}'"
                if backup.exists()
                else f"move it aside and run `orpheus init --force {self.root}`"
            )
            raise WorkspaceError(f"{path} is corrupt ({exc})", hint=hint) from None
        return data

    def _write_manifest(self, data: dict) -> None:
        path = self.root / MANIFEST_FILE
        if path.exists():
            shutil.copy2(path, path.with_name(MANIFEST_FILE + BACKUP_SUFFIX))
        write_json_atomic(path, data)

    def entry(self, name: str) -> dict | None:
        return self.manifest()["artifacts"].get(name)

    def names(self) -> list[str]:
        return list(self.manifest()["artifacts"])

    def register(
        self,
        name: str,
        path: Path | str,
        *,
        params: Mapping[str, Any] | None = None,
        inputs: Mapping[str, str | Path] | None = None,
        command: str | None = None,
        summary: Mapping[str, Any] | None = None,
    ) -> dict:
        """Record that `name` now exists at `path`, how it was made, and from what.

        `inputs` maps a label to an artifact name (e.g. "scan") or a file/folder path.
        """
        abs_path = Path(path) if Path(path).is_absolute() else self.root / path
        if not abs_path.exists():
            raise WorkspaceError(f"cannot register '{name}': {abs_path} does not exist")
        with self.lock():
            data = self.manifest()
            recorded_inputs = {
                label: self._input_record(data, ref) for label, ref in (inputs or {}).items()
            }
            entry = {
                "path": self._rel(abs_path),
                "fingerprint": fingerprint(abs_path),
                "created": _now(),
                "command": command or command_line(),
                "params": _jsonable(dict(params or {})),
                "inputs": recorded_inputs,
                "summary": _jsonable(dict(summary or {})),
            }
            data["artifacts"][name] = entry
            self._write_manifest(data)
        return entry

    def forget(self, name: str) -> None:
        """Drop an artifact's entry (its files are left alone)."""
        with self.lock():
            data = self.manifest()
            if data["artifacts"].pop(name, None) is not None:
                self._write_manifest(data)

    def _input_record(self, data: dict, ref: str | Path) -> dict:
        if isinstance(ref, str) and ref in data["artifacts"]:
            return {"artifact": ref, "fingerprint": data["artifacts"][ref]["fingerprint"]}
        p = Path(ref)
        p = p if p.is_absolute() else self.root / p
        if not p.exists():
            raise WorkspaceError(f"input {ref} is neither an artifact nor an existing path")
        return {"path": self._rel(p), "fingerprint": fingerprint(p), "stat": _stat(p)}

    def _rel(self, p: Path) -> str:
        p = Path(p).resolve()
        try:
            return str(p.relative_to(self.root))
        except ValueError:
            return str(p)

    def artifact_path(self, name: str) -> Path | None:
        entry = self.entry(name)
        if entry is None:
            return None
        p = Path(entry["path"])
        return p if p.is_absolute() else self.root / p

    def label_source(self) -> str:
        """Where the labels come from: `lastfm` (scan + wrangle) or a `labels import` source."""
        entry = self.entry(LABELS)
        return entry["params"]["source"] if entry else LASTFM

    def tracks_artifact(self) -> str:
        """The artifact holding the track table silence reads: `wrangle` or `labels`."""
        return "wrangle" if self.label_source() == LASTFM else LABELS

    def pipeline(self) -> list[tuple[str, str]]:
        """The steps of this workspace's label source, a remade import as it was typed."""
        entry = self.entry(LABELS)
        if entry is None:
            return PIPELINE
        return [(LABELS, entry["command"]), *LABEL_PIPELINE[1:]]

    def audio_root(self) -> Path:
        """The audio root the scan (or the labels import) read: later stages resolve audio there."""
        name = "scan" if self.label_source() == LASTFM else LABELS
        entry = self.entry(name)
        root = (entry or {}).get("params", {}).get("audio_root")
        if not root:
            raise WorkspaceError(f"no {name} yet: run `{make_command(name)}`")
        if not Path(root).is_dir():
            raise WorkspaceError(
                f"the audio root is gone: {root}",
                hint=f"run `{self.pipeline()[0][1]}` again with the audio's new place",
            )
        return Path(root)

    def require(self, name: str) -> Path:
        """The path of an existing artifact, or an error that says which command makes it."""
        p = self.artifact_path(name)
        if p is None or not p.exists():
            raise WorkspaceError(f"no {name} yet: run `{make_command(name)}`")
        return p

    # -- states -----------------------------------------------------------------------------

    def state(self, name: str) -> str:
        return self.states().get(name, (MISSING, "never made"))[0]

    def states(self) -> dict[str, tuple[str, str]]:
        """Every artifact's state and the reason: ok, stale (an input changed) or missing."""
        artifacts = self.manifest()["artifacts"]
        result: dict[str, tuple[str, str]] = {}
        fp_cache: dict[str, str | None] = {}

        def resolve(name: str, seen: tuple[str, ...] = ()) -> tuple[str, str]:
            if name in result:
                return result[name]
            entry = artifacts.get(name)
            if entry is None:
                return (MISSING, "never made")
            path = Path(entry["path"])
            path = path if path.is_absolute() else self.root / path
            if not path.exists():
                outcome = (MISSING, f"{entry['path']} was deleted")
            else:
                outcome = (OK, "")
                for label, rec in entry.get("inputs", {}).items():
                    reason = self._input_change(rec, artifacts, fp_cache, resolve, (*seen, name))
                    if reason:
                        outcome = (STALE, f"{label}: {reason}")
                        break
            result[name] = outcome
            return outcome

        for name in artifacts:
            resolve(name)
        return result

    def _input_change(self, rec, artifacts, fp_cache, resolve, seen) -> str:
        if "artifact" in rec:
            upstream = rec["artifact"]
            if upstream in seen:
                return ""
            up_entry = artifacts.get(upstream)
            if up_entry is None:
                return f"{upstream} is gone"
            if up_entry["fingerprint"] != rec["fingerprint"]:
                return f"{upstream} was remade since"
            up_state, _ = resolve(upstream, seen)
            return "" if up_state == OK else f"{upstream} is {up_state}"
        p = Path(rec["path"])
        p = p if p.is_absolute() else self.root / p
        key = str(p)
        if rec.get("stat") is not None and rec["stat"] == _stat(p):
            return ""  # same size and mtime: skip re-hashing a large input
        if key not in fp_cache:
            fp_cache[key] = fingerprint(p)
        if fp_cache[key] is None:
            return f"{rec['path']} is gone"
        if fp_cache[key] != rec["fingerprint"]:
            return f"{rec['path']} changed"
        return ""

    def next_command(self) -> str | None:
        """The first pipeline step whose artifact is missing or stale, as a command to run."""
        states = self.states()
        for pattern, command in self.pipeline():
            names = _matching(pattern, states)
            if not names or any(states[n][0] != OK for n in names):
                return command
        return None


def make_command(name: str) -> str:
    """The command that makes artifact `name`."""
    for pattern, command in [*PIPELINE, *LABEL_PIPELINE[:1], (LABELS_DB, LABEL_PIPELINE[0][1])]:
        if _matching(pattern, [name]):
            return command
    return f"orpheus {name}"


def _matching(pattern: str, names) -> list[str]:
    if pattern.endswith("/*"):
        prefix = pattern[:-1]
        return [n for n in names if n.startswith(prefix)]
    return [n for n in names if n == pattern]


def _empty_manifest() -> dict:
    return {"version": MANIFEST_VERSION, "artifacts": {}}


def _jsonable(obj: Any) -> Any:
    """Round-trip through JSON so paths, numpy scalars and tuples are stored plainly."""
    return json.loads(json.dumps(obj, default=_json_default))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
