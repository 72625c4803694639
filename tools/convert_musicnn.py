"""Convert musicnn 0.1.0's TF1 checkpoints into Keras weights shipped in `orpheus/pretrained/`.

Downloads nothing: give it the musicnn 0.1.0 wheel (or a folder it was extracted to):

    .venv/bin/pip download --no-deps musicnn==0.1.0 -d /tmp/musicnn
    .venv/bin/python tools/convert_musicnn.py /tmp/musicnn/musicnn-0.1.0-py3-none-any.whl

For each of MSD_musicnn and MTT_musicnn it reads the checkpoint with
`tf.compat.v1.train.NewCheckpointReader('<dir>/')` (the bundle's prefix is the directory with an
empty basename; its `checkpoint` file points at the author's machine), loads the variables into
`orpheus.models.musicnn.build_musicnn()` by name (Adam slots are left behind), and writes
`<name>.weights.h5` and `<name>.labels.json` (labels read from the wheel's configuration.py as
literals, never executed). It also writes `LICENSE-musicnn.txt` (the wheel's ISC notice) and
`SOURCE.json` (sha256 of the source, the command, versions, sha256 of every written file).
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import shlex
import sys
import tempfile
import zipfile
from pathlib import Path

MODELS = {
    "msd-musicnn": ("MSD_musicnn", "MSD_LABELS"),
    "mtt-musicnn": ("MTT_musicnn", "MTT_LABELS"),
}
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "orpheus" / "pretrained"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def labels_from_configuration(source: str, variable: str) -> list[str]:
    """The list literal assigned to `variable` in musicnn's configuration.py."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == variable for t in node.targets
        ):
            return list(ast.literal_eval(node.value))
    raise SystemExit(f"{variable} not found in musicnn/configuration.py")


def convert(package_dir: Path, out: Path) -> dict[str, Path]:
    """Write the Keras weights and label lists of every model; return the written files."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    from orpheus.models.musicnn import build_musicnn, set_tf1_weights

    configuration = (package_dir / "configuration.py").read_text(encoding="utf-8")
    written: dict[str, Path] = {}
    for name, (folder, label_var) in MODELS.items():
        labels = labels_from_configuration(configuration, label_var)
        reader = tf.compat.v1.train.NewCheckpointReader(str(package_dir / folder) + "/")
        model = build_musicnn(len(labels))
        set_tf1_weights(model, reader.get_tensor)
        weights = out / f"{name}.weights.h5"
        model.save_weights(weights)
        labels_file = out / f"{name}.labels.json"
        labels_file.write_text(json.dumps(labels, indent=1) + "\n", encoding="utf-8")
        written[weights.name], written[labels_file.name] = weights, labels_file
        print(f"{name}: {folder} -> {weights.name} ({weights.stat().st_size:,} bytes)")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "source", type=Path, help="musicnn-0.1.0 wheel, or a folder it was extracted to"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp:
        if args.source.is_file():
            with zipfile.ZipFile(args.source) as wheel:
                wheel.extractall(tmp)
            root, source_sha = Path(tmp), sha256(args.source)
        else:
            root, source_sha = args.source, None
        package_dir = root / "musicnn"
        licences = sorted(root.glob("musicnn-*.dist-info/LICENSE*")) or sorted(
            root.glob("LICENSE*")
        )
        if not (package_dir / "configuration.py").is_file() or not licences:
            raise SystemExit(f"{args.source} does not look like the musicnn 0.1.0 wheel")
        written = convert(package_dir, args.out)
        licence = args.out / "LICENSE-musicnn.txt"
        licence.write_text(
            "The musicnn models (msd-musicnn, mtt-musicnn) in Orpheus are converted from\n"
            "the checkpoints in the musicnn 0.1.0 wheel (https://github.com/jordipons/musicnn),\n"
            "distributed under the ISC licence:\n\n" + licences[0].read_text(encoding="utf-8"),
            encoding="utf-8",
        )
        written[licence.name] = licence
    source = {
        "source": "musicnn 0.1.0 (PyPI wheel), ISC licence",
        "source_file": args.source.name,
        "source_sha256": source_sha,
        "models": {name: folder for name, (folder, _) in MODELS.items()},
        "command": " ".join(
            ["python", "tools/convert_musicnn.py", *map(shlex.quote, sys.argv[1:])]
        ),
        "tensorflow": tf.__version__,
        "files": {name: sha256(path) for name, path in sorted(written.items())},
    }
    (args.out / "SOURCE.json").write_text(json.dumps(source, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
