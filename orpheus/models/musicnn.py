"""musicnn (Pons & Serra 2019) rebuilt in Keras 3, and the map from its TF1 checkpoint names.

The released `MSD_musicnn` / `MTT_musicnn` taggers were TF1 graphs (`tf.compat.v1.layers`),
which no longer build under Keras 3. This module rebuilds the same graph from stock Keras layers
(so it needs no legacy Keras and no Lambda layers) and loads the original variables by name:

- input BatchNorm with one scalar gamma/beta over the whole (time, mel) patch;
- front end: two timbral convs (7 x 38 and 7 x 67 mel, 204 filters, time zero-padded by 3) and
  three temporal convs (128/64/32 x 1, 51 filters, 'same'), each ReLU then BatchNorm, each
  max-pooled over the whole frequency axis, concatenated to (T, 561);
- mid end: three 7-frame convs over all features (64 filters, ReLU, BN), the 2nd and 3rd with
  residuals, densely concatenated with the front end to (T, 753);
- back end: max and mean over time, *interleaved* to 1506 values [max0, mean0, max1, ...]
  (the order the TF1 `flatten` produced, so the checkpoint's dense kernel rows fit as they are),
  BN, dropout, dense 200 ReLU, BN (the "penultimate" embedding), dropout, dense 50, sigmoid.

The sigmoid lives inside the last Dense layer (named `output`, like Orpheus's own models), so
the input of the `output` layer is the penultimate embedding for every Orpheus model alike.
The graph is length-agnostic in time (padding keeps T, pooling is global); the models were
trained on 187-frame (3 s) patches.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
from keras import layers

# The features the released models were trained on (musicnn's config.py): 16 kHz log-mel,
# n_fft 512, hop 256, 96 mels, 187-frame (3 s) patches (`Tagger.pretrained` builds its recipe
# from these; this module stays free of orpheus.features, whose TF twins import TensorFlow).
SAMPLE_RATE, N_FFT, HOP_LENGTH, N_MELS = 16000, 512, 256, 96
PATCH_FRAMES = 187

# Keras layer name -> TF1 variable scope in the musicnn checkpoints (creation order of
# `musicnn/models.py`; tf.name_scope('model') does not prefix tf.compat.v1.layers variables).
TF1_NAMES: dict[str, str] = {
    "input_bn": "batch_normalization",
    "timbral_38": "conv2d",
    "timbral_38_bn": "batch_normalization_1",
    "timbral_67": "conv2d_1",
    "timbral_67_bn": "batch_normalization_2",
    "temporal_128": "conv2d_2",
    "temporal_128_bn": "batch_normalization_3",
    "temporal_64": "conv2d_3",
    "temporal_64_bn": "batch_normalization_4",
    "temporal_32": "conv2d_4",
    "temporal_32_bn": "batch_normalization_5",
    "midend_1": "conv2d_5",
    "midend_1_bn": "batch_normalization_6",
    "midend_2": "conv2d_6",
    "midend_2_bn": "batch_normalization_7",
    "midend_3": "conv2d_7",
    "midend_3_bn": "batch_normalization_8",
    "pool_bn": "batch_normalization_9",
    "dense": "dense",
    "penultimate": "batch_normalization_10",
    "output": "dense_1",
}

_BN_VARIABLES = ("gamma", "beta", "moving_mean", "moving_variance")


def build_musicnn(
    n_labels: int = 50,
    *,
    n_mels: int = N_MELS,
    frames: int | None = None,
    frontend_factor: float = 1.6,
    midend_filters: int = 64,
    dense_units: int = 200,
) -> keras.Model:
    """The musicnn graph with the released models' sizes by default (787,159 trainable params).

    Input: log-mel patches (batch, frames, n_mels) from `orpheus.audio.log_mel`; `frames=None`
    accepts any patch length. Output: per-label sigmoid probabilities.
    """
    inputs = keras.Input(shape=(frames, n_mels), name="log_mel")
    x = layers.Reshape((-1, n_mels, 1), name="add_channel")(inputs)
    x = layers.BatchNormalization(name="input_bn")(x)

    timbral_filters, temporal_filters = int(frontend_factor * 128), int(frontend_factor * 32)
    padded = layers.ZeroPadding2D(((3, 3), (0, 0)), name="timbral_pad")(x)
    branches = [
        _freq_pooled_conv(padded, f"timbral_{h}", timbral_filters, (7, h), "valid", n_mels - h + 1)
        for h in (int(0.4 * n_mels), int(0.7 * n_mels))
    ]
    branches += [
        _freq_pooled_conv(x, f"temporal_{w}", temporal_filters, (w, 1), "same", n_mels)
        for w in (128, 64, 32)
    ]
    front = layers.Concatenate(axis=-1, name="frontend")(branches)

    c1 = _midend_conv(front, "midend_1", midend_filters)
    c2 = layers.Add(name="midend_2_res")([_midend_conv(c1, "midend_2", midend_filters), c1])
    c3 = layers.Add(name="midend_3_res")([_midend_conv(c2, "midend_3", midend_filters), c2])
    features = layers.Concatenate(axis=-1, name="midend")([front, c1, c2, c3])

    width = features.shape[-1]
    max_pool = layers.GlobalMaxPooling1D(name="max_pool")(features)
    mean_pool = layers.GlobalAveragePooling1D(name="mean_pool")(features)
    stacked = layers.Concatenate(axis=-1, name="max_mean")(
        [
            layers.Reshape((width, 1), name="max_pool_col")(max_pool),
            layers.Reshape((width, 1), name="mean_pool_col")(mean_pool),
        ]
    )
    x = layers.Flatten(name="pooled")(stacked)  # interleaved [max0, mean0, max1, mean1, ...]
    x = layers.BatchNormalization(name="pool_bn")(x)
    x = layers.Dropout(0.5, name="dropout_1")(x)
    x = layers.Dense(dense_units, activation="relu", name="dense")(x)
    x = layers.BatchNormalization(name="penultimate")(x)
    x = layers.Dropout(0.5, name="dropout_2")(x)
    outputs = layers.Dense(n_labels, activation="sigmoid", name="output")(x)
    return keras.Model(inputs, outputs, name="musicnn")


def _freq_pooled_conv(x, name: str, filters: int, kernel, padding: str, freq_out: int):
    """Conv2D + ReLU + BN, then max over the whole remaining frequency axis -> (T, filters)."""
    x = layers.Conv2D(filters, kernel, padding=padding, activation="relu", name=name)(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    x = layers.MaxPooling2D((1, freq_out), name=f"{name}_pool")(x)
    return layers.Reshape((-1, filters), name=f"{name}_squeeze")(x)


def _midend_conv(x, name: str, filters: int):
    """7-frame conv over all input features (time zero-padded by 3), ReLU, then BN."""
    x = layers.ZeroPadding1D(3, name=f"{name}_pad")(x)
    x = layers.Conv1D(filters, 7, activation="relu", name=name)(x)
    return layers.BatchNormalization(name=f"{name}_bn")(x)


def pool_before_norm(model: keras.Model) -> keras.Model:
    """The same function as `model` (a musicnn graph, any outputs), for inference only, ~20% faster.

    Each front-end branch is conv -> ReLU -> BatchNorm -> max over frequency; the BatchNorm
    runs on the full (T, F, filters) map, the costliest part after the convs. In inference a
    BatchNorm is, per channel, a monotone function of its input (increasing where gamma >= 0,
    decreasing where gamma < 0), and float rounding keeps it monotone, so max-then-BN gives
    exactly BN-then-max where gamma >= 0. Where gamma < 0 the max of BN is BN of the *min*;
    negating those channels' kernels and biases (exact in floats) turns that min into a max.
    So each branch becomes: conv with sign-flipped channels -> max over frequency -> flip back
    -> ReLU -> BatchNorm, and BatchNorm and ReLU run on a (T, 1, filters) map. The mid end and
    back end are `model`'s own layers, untouched. Tested equal to `model` on real patches.
    """
    tail = keras.Model(model.get_layer("frontend").output, model.outputs)  # before reusing layers
    inputs = keras.Input(shape=model.input_shape[1:], name="log_mel")
    x = model.get_layer("input_bn")(model.get_layer("add_channel")(inputs))
    padded = model.get_layer("timbral_pad")(x)
    branches = []
    for conv in (layer for layer in model.layers if isinstance(layer, layers.Conv2D)):
        norm = model.get_layer(f"{conv.name}_bn")
        sign = np.where(norm.get_weights()[0] >= 0, 1.0, -1.0).astype(np.float32)
        flipped = layers.Conv2D(conv.filters, conv.kernel_size, padding=conv.padding)
        z = flipped(padded if conv.padding == "valid" else x)  # timbral convs pad time first
        kernel, bias = conv.get_weights()
        flipped.set_weights([kernel * sign, bias * sign])
        z = keras.ops.relu(model.get_layer(f"{conv.name}_pool")(z) * sign)
        branches.append(model.get_layer(f"{conv.name}_squeeze")(norm(z)))
    return keras.Model(inputs, tail(layers.Concatenate(axis=-1)(branches)), name=model.name)


def set_tf1_weights(model: keras.Model, get_tensor: Callable[[str], np.ndarray]) -> None:
    """Load musicnn's TF1 variables into `model`; `get_tensor` reads a variable by full name.

    Conv2D kernels keep their TF1 layout (time, freq, in, out); the mid-end kernels
    (7, C, 1, F) drop their unit axis to become Conv1D kernels (7, C, F). Shapes are checked by
    Keras, so a checkpoint of another size fails loudly instead of loading garbage.
    """
    for layer_name, scope in TF1_NAMES.items():
        layer = model.get_layer(layer_name)
        if isinstance(layer, layers.BatchNormalization):
            values = [get_tensor(f"{scope}/{v}") for v in _BN_VARIABLES]
        else:
            kernel = get_tensor(f"{scope}/kernel")
            if isinstance(layer, layers.Conv1D):
                kernel = kernel.reshape(kernel.shape[0], kernel.shape[1], kernel.shape[3])
            values = [kernel, get_tensor(f"{scope}/bias")]
        layer.set_weights([np.asarray(v, dtype=np.float32) for v in values])
