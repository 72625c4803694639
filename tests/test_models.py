"""The Pons et al. 2018 models: shapes, the original's parameter count, safe-mode round trip."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from orpheus.audio import LogMelParams
from orpheus.models import build_model
from orpheus.models.pons import _min_waveform_length


def _trainable(model) -> int:
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def test_log_mel_model_has_the_original_parameter_count_at_50_tags():
    frames = LogMelParams().frames(15)
    model = build_model("log-mel", 50, n_filters=16, n_dense_units=500, input_length=frames)
    assert model.input_shape == (None, frames, 96)
    assert model.output_shape == (None, 50)
    assert _trainable(model) == 5_924_154  # the seed's checkpoint, counted (peers.md B3)
    # the front end's ten branches give 29 * n_filters channels, time unchanged
    assert model.get_layer("frontend_concat").output.shape == (None, frames, 29 * 16)
    # the two post-permute BatchNorms have one scalar gamma/beta (the original's quirk)
    assert model.get_layer("conv2_back_bn").gamma.shape == (1,)


def test_waveform_front_end_reduces_15_s_to_108_steps_of_256_channels():
    model = build_model("waveform", 50, n_filters=16, n_dense_units=500, input_length=240_000)
    assert model.input_shape == (None, 240_000)
    assert model.get_layer("wave6_pool").output.shape == (None, 108, 256)
    assert model.output_shape == (None, 50)


@pytest.mark.parametrize(("frontend", "length"), [("log-mel", 40), ("waveform", 20_000)])
def test_small_models_predict_probabilities_and_reload_in_safe_mode(tmp_path, frontend, length):
    model = build_model(frontend, 4, n_filters=2, n_dense_units=8, input_length=length)
    shape = (3, length, 96) if frontend == "log-mel" else (3, length)
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    y = model.predict_on_batch(x)
    assert y.shape == (3, 4) and np.all((y > 0) & (y < 1))
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(again.predict_on_batch(x), y, rtol=1e-5, atol=1e-6)


def test_too_short_windows_and_unknown_frontends_are_refused():
    n = _min_waveform_length()
    build_model("waveform", 2, n_filters=2, n_dense_units=4, input_length=n)
    with pytest.raises(ValueError, match=f"needs at least {n} samples"):
        build_model("waveform", 2, n_filters=2, n_dense_units=4, input_length=n - 1)
    with pytest.raises(ValueError, match="at least 8"):
        build_model("log-mel", 2, n_filters=2, n_dense_units=4, input_length=7)
    with pytest.raises(ValueError, match="unknown frontend"):
        build_model("mfcc", 2, n_filters=2, n_dense_units=4, input_length=100)


def test_back_end_width_is_configurable_and_512_by_default():
    frames = LogMelParams().frames(3)
    narrow = build_model(
        "log-mel", 11, n_filters=8, n_dense_units=200, input_length=frames, backend_filters=64
    )
    default = build_model("log-mel", 11, n_filters=8, n_dense_units=200, input_length=frames)
    assert narrow.get_layer("conv2_back").kernel.shape == (7, 64, 64)
    assert default.get_layer("conv2_back").kernel.shape == (7, 512, 512)
    # back end: conv1 7*232*W + W and its BatchNorm 2W, conv2/conv3 7*W*W + W each (their
    # BatchNorms are scalar), the first dense layer 2W*200 + 200
    back = lambda w: 7 * 232 * w + 3 * w + 2 * (7 * w * w + w) + 2 * w * 200 + 200  # noqa: E731
    assert _trainable(default) - _trainable(narrow) == back(512) - back(64)
    with pytest.raises(ValueError, match="backend_filters"):
        build_model("log-mel", 2, n_filters=2, n_dense_units=4, input_length=40, backend_filters=0)


@pytest.mark.parametrize(("layer", "width", "height"), [("conv1", 7, 86), ("conv6", 1, 38)])
def test_timbral_convolutions_span_frames_by_mels(layer, width, height):
    """Each timbral kernel covers `width` frames (centred) by `height` mel bands, whatever layout
    the model computes it in: checked against a direct NumPy sum over the kernel's taps."""
    frames, n_mels = 12, 96
    model = build_model("log-mel", 2, n_filters=2, n_dense_units=4, input_length=frames)
    conv = model.get_layer(layer)
    x = np.random.default_rng(1).normal(size=(2, frames, n_mels)).astype(np.float32)
    got = keras.Model(model.input, conv.output).predict_on_batch(x)
    kernel, bias = (np.asarray(w) for w in conv.get_weights())
    if kernel.shape[:2] == (height, width):  # laid out (mels x frames)
        kernel = kernel.transpose(1, 0, 2, 3)
    else:
        got = got.transpose(0, 2, 1, 3)  # (frames, positions) -> (positions, frames)
    assert kernel.shape[:2] == (width, height)
    half = width // 2
    padded = np.pad(x, ((0, 0), (half, half), (0, 0)))
    positions = n_mels - height + 1
    want = np.zeros((2, positions, frames, kernel.shape[-1]), np.float32)
    for p in range(positions):
        for t in range(frames):
            patch = padded[:, t : t + width, p : p + height]  # (batch, width, height)
            want[:, p, t] = np.einsum("bwh,whf->bf", patch, kernel[:, :, 0]) + bias
    want = np.maximum(want, 0.0)
    # float32 sums of up to 602 products of N(0,1) inputs: rounding stays well under 1e-4
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


TENSORFLOW = ("tensorflow", "tf_keras")


def _imports(path) -> set[str]:
    """Every module `path` imports, at any depth of its code (functions included), by name."""
    import ast

    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            name = getattr(node.func, "attr", getattr(node.func, "id", ""))
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.add(node.args[0].value)
    return found


def _tensorflow_imports(files) -> dict[str, set[str]]:
    """TensorFlow modules imported by `files` or by any orpheus module they import, in turn."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    todo, seen, bad = [Path(f) for f in files], set(), {}
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imports(path):
            if name.split(".")[0] in TENSORFLOW:
                bad.setdefault(str(path), set()).add(name)
            elif name.split(".")[0] == "orpheus":
                parts = name.split(".")
                for n in range(len(parts), 0, -1):  # a module, or a name in a package/module
                    base = root.joinpath(*parts[:n])
                    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
                        if candidate.is_file():
                            todo.append(candidate)
                    if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
                        break
    return bad


def test_models_never_import_tensorflow(tmp_path):
    """orpheus/models/ is plain Keras 3 (it must run under KERAS_BACKEND=jax on a machine without
    TensorFlow): no module there imports TensorFlow, directly or through another orpheus module.
    Read from the source, since this venv's Keras backend is TensorFlow itself."""
    from pathlib import Path

    models = sorted((Path(__file__).resolve().parents[1] / "orpheus/models").glob("*.py"))
    assert {p.name for p in models} >= {"__init__.py", "pons.py", "musicnn.py"}
    assert _tensorflow_imports(models) == {}
    # the check sees an import inside a function, and one made by an imported orpheus module
    hidden = tmp_path / "hidden.py"
    hidden.write_text("def f():\n    import tensorflow.compat.v1 as tf\n    return tf\n")
    assert _tensorflow_imports([hidden]) == {str(hidden): {"tensorflow.compat.v1"}}
    via = tmp_path / "via.py"
    via.write_text("from orpheus.training import Trainer\n")
    assert "tensorflow" in set().union(*_tensorflow_imports([via]).values())
