"""The CLI skeleton, the workspace + manifest, and the config: the ground every stage stands on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import orpheus

from orpheus import config as config_lib
from orpheus.cli import app
from orpheus.workspace import Workspace, WorkspaceError, fingerprint

SEED_CONFIGS = sorted((Path(__file__).parent / "fixtures" / "seed-configs").glob("*.json"))
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace.create(tmp_path / "ws")


# -- CLI ------------------------------------------------------------------------------------


def test_help_lists_commands_and_version():
    result = orpheus("--help")
    assert result.exit_code == 0
    for name in ("init", "status", "config"):
        assert name in result.stdout
    version = orpheus("--version")
    assert version.exit_code == 0 and version.stdout.startswith("orpheus ")


def _command_paths(group, prefix=()):
    """Every command of the CLI as its words, e.g. ("tags", "related")."""
    import typer.main

    click_group = typer.main.get_command(app) if group is None else group
    for name, command in click_group.commands.items():
        yield (*prefix, name)
        if hasattr(command, "commands"):
            yield from _command_paths(command, (*prefix, name))


def test_flags_show_no_value_in_help():
    """A flag takes no value, so no help screen may print a type such as `<bool>` beside it."""
    paths = list(_command_paths(None))
    assert ("predict",) in paths and ("tags", "related") in paths
    for path in [(), *paths]:
        result = orpheus(*path, "--help")
        assert result.exit_code == 0, (path, result.output)
        assert "--help" in result.output and "<bool>" not in result.output, path


def test_outside_a_workspace_is_a_one_line_error(tmp_path: Path):
    result = orpheus("status", cwd=tmp_path, env={"ORPHEUS_WORKSPACE": ""})
    assert result.exit_code == 2
    assert "not inside an Orpheus workspace" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_error_messages_print_brackets_in_paths_literally(tmp_path: Path):
    """Paths and tag names can hold rich markup such as `[/]`; an error quoting them must not
    turn into an internal error or lose the brackets."""
    odd = tmp_path / "odd[/]" / "[bold]ws"
    result = orpheus("-w", str(odd), "status", cwd=tmp_path)
    assert result.exit_code == 2
    assert f"error: {odd} is not an Orpheus workspace" in result.stderr


def test_workspace_from_flag_env_and_cwd(ws: Workspace, tmp_path: Path):
    assert orpheus("-w", str(ws.root), "status", "--json").exit_code == 0
    by_env = orpheus("status", "--json", cwd=tmp_path, env={"ORPHEUS_WORKSPACE": str(ws.root)})
    assert json.loads(by_env.stdout)["workspace"] == str(ws.root)
    (ws.root / "sub").mkdir()
    by_cwd = orpheus("status", "--json", cwd=ws.root / "sub", env={"ORPHEUS_WORKSPACE": ""})
    assert json.loads(by_cwd.stdout)["workspace"] == str(ws.root)


def test_python_dash_m_and_no_tensorflow_for_fast_commands(ws: Workspace):
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from orpheus.cli import app\n"
        "r = CliRunner()\n"
        f"for args in (['--help'], ['-w', {str(ws.root)!r}, 'status'],"
        f" ['-w', {str(ws.root)!r}, 'config', 'show']):\n"
        "    assert r.invoke(app, args).exit_code == 0, args\n"
        "print('tensorflow' in sys.modules, 'librosa' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
    ran = subprocess.run(
        [sys.executable, "-m", "orpheus", "--version"], capture_output=True, text=True
    )
    assert ran.returncode == 0 and "orpheus" in ran.stdout


# -- init -----------------------------------------------------------------------------------


def test_init_writes_defaults_and_refuses_to_overwrite(tmp_path: Path):
    target = tmp_path / "new"
    assert orpheus("init", str(target)).exit_code == 0
    cfg = json.loads((target / "config.json").read_text())
    assert cfg["model"] == {"n_dense_units": 500, "n_filters": 16, "n_backend_filters": 512}
    assert cfg["model-training"]["log_dir"] == "runs"  # no absolute /srv paths
    assert cfg["tfrecords"]["n_mels"] == 96 and cfg["tags"]["top"] == 50
    assert json.loads((target / "manifest.json").read_text())["artifacts"] == {}

    (target / "config.json").write_text(json.dumps({"model": {"n_filters": 8}}))
    (target / "data").mkdir()
    (target / "data" / "mine.txt").write_text("user data")
    again = orpheus("init", str(target))
    assert again.exit_code == 2 and "already an Orpheus workspace" in again.stderr
    assert json.loads((target / "config.json").read_text()) == {"model": {"n_filters": 8}}

    assert orpheus("init", str(target), "--force").exit_code == 0
    assert (target / "data" / "mine.txt").read_text() == "user data"
    assert json.loads((target / "config.json.bak").read_text()) == {"model": {"n_filters": 8}}
    assert json.loads((target / "config.json").read_text())["model"]["n_filters"] == 16


def test_init_rejects_a_file_and_bad_track_counts(tmp_path: Path):
    (tmp_path / "afile").write_text("x")
    assert orpheus("init", str(tmp_path / "afile")).exit_code == 2
    result = orpheus("init", str(tmp_path / "w"), "--example", "--tracks", "0")
    assert result.exit_code == 2 and "--tracks" in result.stderr
    assert not (tmp_path / "w").exists()


# -- manifest -------------------------------------------------------------------------------


def test_register_states_and_staleness(ws: Workspace, tmp_path: Path):
    source = tmp_path / "duplicates.txt"
    source.write_text("# header\n%1\nTRAAAAA128F00000001\n")
    (ws.path("data")).mkdir()
    ws.path("data/scan.parquet").write_bytes(b"scan")
    ws.register("scan", "data/scan.parquet", params={"root": "/x"}, summary={"rows": 1})
    ws.path("data/wrangle.parquet").write_bytes(b"wrangle")
    ws.register("wrangle", "data/wrangle.parquet", inputs={"scan": "scan", "duplicates": source})
    ws.path("data/silence.parquet").write_bytes(b"silence")
    ws.register("silence", ws.path("data/silence.parquet"), inputs={"wrangle": "wrangle"})
    assert {n: ws.state(n) for n in ("scan", "wrangle", "silence")} == dict.fromkeys(
        ("scan", "wrangle", "silence"), "ok"
    )
    entry = ws.entry("wrangle")
    assert entry["inputs"]["duplicates"]["fingerprint"] == fingerprint(source)
    assert entry["command"].startswith("orpheus")

    source.write_text("# header\n%1\nTRAAAAA128F00000002\n")  # an input changes ...
    assert ws.state("wrangle") == "stale"
    assert ws.state("silence") == "stale"  # ... and everything downstream goes stale
    assert ws.state("scan") == "ok"
    assert ws.next_command() == "orpheus wrangle"

    ws.path("data/scan.parquet").write_bytes(b"new scan")  # re-made upstream
    ws.register("scan", "data/scan.parquet")
    assert "scan was remade" in ws.states()["wrangle"][1]

    ws.path("data/silence.parquet").unlink()
    assert ws.state("silence") == "missing"
    with pytest.raises(WorkspaceError, match="no silence yet: run `orpheus silence`"):
        ws.require("silence")


def test_status_json_shape(ws: Workspace):
    ws.path("data").mkdir()
    ws.path("data/scan.parquet").write_bytes(b"x")
    ws.register("scan", "data/scan.parquet", summary={"rows": 3})
    out = json.loads(orpheus("-w", str(ws.root), "status", "--json").stdout)
    assert set(out) == {"workspace", "artifacts", "next"}
    scan = next(a for a in out["artifacts"] if a["name"] == "scan")
    assert {"name", "state", "path", "created", "command"} <= set(scan)
    assert scan["state"] == "ok" and out["next"] == "orpheus wrangle"


def test_corrupt_manifest_is_reported_and_backup_recovers(ws: Workspace):
    ws.path("a.txt").write_text("a")
    ws.register("scan", "a.txt")
    ws.path("b.txt").write_text("b")
    ws.register("wrangle", "b.txt")  # the backup now holds the manifest with 'scan'
    manifest = ws.path("manifest.json")
    manifest.write_text('{"artifacts": {"scan": ')  # a half-written file
    result = orpheus("-w", str(ws.root), "status")
    assert result.exit_code == 2
    assert "manifest.json is corrupt" in result.stderr and "manifest.json.bak" in result.stderr
    assert manifest.read_text() == '{"artifacts": {"scan": '  # never overwritten silently
    manifest.write_text(ws.path("manifest.json.bak").read_text())
    assert set(Workspace.open(ws.root).names()) == {"scan"}


REGISTER_MANY = """
import sys
from pathlib import Path
from orpheus.workspace import Workspace
ws = Workspace.open(sys.argv[1])
tag = sys.argv[2]
for i in range(25):
    p = ws.path(f"{tag}-{i}.txt")
    p.write_text(str(i))
    ws.register(f"{tag}-{i}", p)
"""


def test_two_processes_racing_never_lose_or_corrupt_entries(ws: Workspace):
    procs = [
        subprocess.Popen([sys.executable, "-c", REGISTER_MANY, str(ws.root), tag])
        for tag in ("left", "right")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    names = set(Workspace.open(ws.root).names())
    assert names == {f"{t}-{i}" for t in ("left", "right") for i in range(25)}
    assert not list(ws.root.glob(".manifest.json.*.tmp"))


# -- config ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", SEED_CONFIGS, ids=lambda p: p.name)
def test_the_original_configs_validate_unchanged(path: Path):
    cfg = config_lib.load(path)
    raw = json.loads(path.read_text())
    for section, values in raw.items():
        for key, value in values.items():
            assert cfg[section][key] == value
    assert orpheus("config", "validate", str(path)).exit_code == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{bad", "not valid JSON"),
        ('{"model": {"n_filters": "16"}}', "'model.n_filters' must be int"),
        ('{"model": {"colour": 1}}', "unknown key 'model.colour'"),
        ('{"modle": {}}', "unknown section 'modle'"),
        ('{"model-training": {"split": [80, 10, 5]}}', "must add up to 100"),
        ('{"tfrecords": {"format": "mp3"}}', "'tfrecords.format' must be one of"),
        ('{"model": {"n_filters": true}}', "'model.n_filters' must be int"),
    ],
)
def test_bad_configs_are_one_line_errors(tmp_path: Path, text: str, message: str):
    path = tmp_path / "c.json"
    path.write_text(text)
    result = orpheus("config", "validate", str(path))
    assert result.exit_code == 2
    assert message in result.stderr and str(path) in result.stderr
    assert "Traceback" not in result.stderr


def test_typed_settings_cover_every_schema_key_with_its_value(ws: Workspace):
    from orpheus import config as config_mod

    ws.save_config(config_mod.set_value(ws.config, "tags.with", '["jazz"]'))
    typed = ws.settings
    for section, keys in config_mod.SCHEMA.items():
        part = getattr(typed, section.replace("-", "_"))
        for key in keys:
            assert getattr(part, "with_" if key == "with" else key) == ws.config[section][key]
    assert typed.tags.with_ == ["jazz"]


def test_config_show_and_set(ws: Workspace):
    root = str(ws.root)
    assert orpheus("-w", root, "config", "set", "model-training.batch_size", "32").exit_code == 0
    shown = orpheus("-w", root, "config", "show", "model-training.batch_size")
    assert json.loads(shown.stdout) == 32
    lr = orpheus("-w", root, "config", "set", "model-training.optimizer.learning_rate", "0.01")
    assert lr.exit_code == 0
    assert Workspace.open(ws.root).config["model-training"]["optimizer"]["learning_rate"] == 0.01
    bad = orpheus("-w", root, "config", "set", "model-training.batch_size", "many")
    assert bad.exit_code == 2 and "config.json" in bad.stderr
    assert Workspace.open(ws.root).config["model-training"]["batch_size"] == 32
    assert orpheus("-w", root, "config", "show", "nope.key").exit_code == 2
    negative = orpheus("-w", root, "config", "set", "model-training.reduceLRoP_min_delta", "-1")
    assert negative.exit_code == 0  # a negative value is a value, not an option
    assert Workspace.open(ws.root).config["model-training"]["reduceLRoP_min_delta"] == -1


# -- completions ----------------------------------------------------------------------------


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completions_are_up_to_date(shell: str):
    exe = Path(sys.executable).parent / "orpheus"
    env = {**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    generated = subprocess.run(
        [str(exe), "--show-completion", shell], capture_output=True, text=True, check=True, env=env
    ).stdout
    shipped = (REPO / "completions" / f"orpheus.{shell}").read_text()
    assert generated == shipped, "completions are stale: run `make completions`"
