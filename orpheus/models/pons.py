"""The Pons et al. 2018 tagger ("End-to-end learning for music audio tagging at scale").

Two front ends, `waveform` (sample-level convolutions on 16 kHz audio) and `log-mel` (timbral
and temporal convolutions on a log-mel spectrogram), feed one shared back end, layer for layer as
the original project built them (seed-inventory §2.11): every convolution is ReLU then
BatchNorm, VarianceScaling initialisation, the back end's quirky post-permute BatchNorm with a
single scalar gamma/beta, interleaved max/mean pooling, and a sigmoid output layer.

One deliberate difference: Orpheus's log-mel features are time-major `(frames, mels)` at hop 256
(the original fed mel-major `(mels, frames)` at hop 512); the timbral kernels one frame wide
are written (time x frequency), the others run on a mel-major copy, whichever is faster on the
CPU. The parameter count does not depend on either change: at 16 filters, 500 dense units and
50 tags the log-mel model has 5,924,154 trainable parameters, exactly the original's. The back
end's width is the paper's 512 unless told otherwise.

Every layer is a stock Keras layer (no Lambda), so a saved `.keras` model loads with
`safe_mode=True`. Inputs are fixed-length windows; the Tagger slices songs into such windows.
"""

from __future__ import annotations

import keras
from keras import layers

from orpheus.config import settings

FRONTENDS = ("waveform", "log-mel")
BACKEND_FILTERS = settings().model.n_backend_filters  # the paper's 512, from the config schema
N_MELS = settings().tfrecords.n_mels


def input_shape(frontend: str, input_length: int, n_mels: int = N_MELS) -> tuple[int, ...]:
    """Shape of one input window (no batch axis): (samples,) or (frames, mels)."""
    _check_frontend(frontend)
    return (input_length,) if frontend == "waveform" else (input_length, n_mels)


def build_model(
    frontend: str,
    n_labels: int,
    *,
    n_filters: int,
    n_dense_units: int,
    input_length: int,
    n_mels: int = N_MELS,
    backend_filters: int = BACKEND_FILTERS,
    dropout: float = 0.5,
) -> keras.Model:
    """Build the tagger for `frontend` with `n_labels` sigmoid outputs.

    `input_length` is the window in samples (waveform) or frames (log-mel). `n_filters` sizes the
    log-mel front end (the waveform front end has fixed widths, as in the paper).
    `backend_filters` is the back end's width: the paper's 512 suits the MSD, while the back end
    costs most of a CPU training step, so a small corpus trains far faster at a narrower one.
    `dropout` is the paper's 0.5; tests set it to 0 to compare training loops deterministically.
    """
    _check_frontend(frontend)
    if n_labels < 1:
        raise ValueError(f"n_labels must be >= 1, got {n_labels}")
    if backend_filters < 1:
        raise ValueError(f"backend_filters must be >= 1, got {backend_filters}")
    inputs = keras.Input(shape=input_shape(frontend, input_length, n_mels), name="features")
    if frontend == "waveform":
        features = _waveform_frontend(inputs, input_length)
    else:
        features = _logmel_frontend(inputs, input_length, n_mels, n_filters)
    outputs = _backend(features, n_labels, n_dense_units, backend_filters, dropout)
    return keras.Model(inputs, outputs, name=f"pons2018_{frontend.replace('-', '')}")


def _check_frontend(frontend: str) -> None:
    if frontend not in FRONTENDS:
        raise ValueError(f"unknown frontend {frontend!r}: choose {' or '.join(FRONTENDS)}")


def _init() -> keras.initializers.Initializer:
    return keras.initializers.VarianceScaling()


def _conv_relu_bn(x, conv: layers.Layer, name: str):
    """The original's convention: ReLU inside the convolution, BatchNorm after it."""
    return layers.BatchNormalization(name=f"{name}_bn")(conv(x))


def _waveform_frontend(x, length: int):
    """Sample-level front end: a stride-3 conv, then six conv + max-pool(3) blocks -> (T', 256)."""
    time = (length - 3) // 3 + 1
    for _ in range(6):
        time = (time - 2) // 3
    if time < 8:
        raise ValueError(
            f"a waveform window of {length} samples is too short for the model "
            f"(needs at least {_min_waveform_length()} samples)"
        )
    x = layers.Reshape((length, 1), name="wave_expand")(x)
    x = _conv_relu_bn(
        x,
        layers.Conv1D(
            64, 3, strides=3, activation="relu", kernel_initializer=_init(), name="wave0"
        ),
        "wave0",
    )
    for i, filters in enumerate((64, 64, 128, 128, 128, 256), start=1):
        conv = layers.Conv1D(
            filters, 3, activation="relu", kernel_initializer=_init(), name=f"wave{i}"
        )
        x = _conv_relu_bn(x, conv, f"wave{i}")
        x = layers.MaxPooling1D(3, name=f"wave{i}_pool")(x)
    return x


def _min_waveform_length() -> int:
    """Shortest waveform window whose front-end output has the 8 steps the back end needs."""
    time = 8
    for _ in range(6):
        time = time * 3 + 2
    return time * 3


def _logmel_frontend(x, frames: int, n_mels: int, nf: int):
    """Timbral (frequency-spanning) and temporal (energy-envelope) branches -> (T, 29 nf)."""
    if frames < 8:
        raise ValueError(f"a log-mel window of {frames} frames is too short (needs at least 8)")
    # Kernels 7 and 3 frames wide run on a frequency-major copy of the input, kernel (height x
    # width): the same function, but oneDNN's filter gradient for a tall kernel over a short time
    # axis is 1.2-4x faster than for the transposed one (a training step of the demo's model
    # 19-26%). One-frame kernels are faster time-major.
    mel_major = layers.Reshape((n_mels, frames, 1), name="mel_major")(layers.Permute((2, 1))(x))
    x = layers.Reshape((frames, n_mels, 1), name="mel_expand")(x)
    padded = {
        7: layers.ZeroPadding2D(((0, 0), (3, 3)), name="pad7")(mel_major),
        3: layers.ZeroPadding2D(((0, 0), (1, 1)), name="pad3")(mel_major),
        1: x,
    }
    branches = []
    timbral = [
        (1, int(0.9 * n_mels), 7, nf),
        (2, int(0.9 * n_mels), 3, 2 * nf),
        (3, int(0.9 * n_mels), 1, 4 * nf),
        (4, int(0.4 * n_mels), 7, nf),
        (5, int(0.4 * n_mels), 3, 2 * nf),
        (6, int(0.4 * n_mels), 1, 4 * nf),
    ]
    for i, height, width, filters in timbral:
        freq_major = width > 1
        conv = layers.Conv2D(
            filters,
            (height, width) if freq_major else (width, height),
            activation="relu",
            kernel_initializer=_init(),
            name=f"conv{i}",
        )
        y = _conv_relu_bn(padded[width], conv, f"conv{i}")
        pool = (n_mels - height + 1, 1) if freq_major else (1, n_mels - height + 1)
        y = layers.MaxPooling2D(pool, name=f"conv{i}_freqpool")(y)
        branches.append(layers.Reshape((frames, filters), name=f"conv{i}_squeeze")(y))
    envelope = layers.AveragePooling2D((1, n_mels), name="freq_avgpool")(x)
    envelope = layers.Reshape((frames, 1), name="envelope")(envelope)
    for i, width, filters in ((7, 165, nf), (8, 128, 2 * nf), (9, 64, 4 * nf), (10, 32, 8 * nf)):
        conv = layers.Conv1D(
            filters,
            width,
            padding="same",
            activation="relu",
            kernel_initializer=_init(),
            name=f"conv{i}",
        )
        branches.append(_conv_relu_bn(envelope, conv, f"conv{i}"))
    return layers.Concatenate(axis=-1, name="frontend_concat")(branches)


def _backend(x, n_labels: int, n_dense_units: int, width: int, dropout: float):
    """Three 7-step convolutions of `width` filters with residuals, pooling, two dense layers.

    The original writes each back-end convolution as a Conv2D with a (7 x all-features) kernel
    on a one-channel image, then permutes. A Conv1D with 7 taps over the features-as-channels
    is the same function with the same parameters (kernel 7 x F x width), and TensorFlow's
    gradient for it is ~100x faster on CPU, so that is how it is written here.
    """
    time = x.shape[1]

    def conv(name: str):
        return layers.Conv1D(width, 7, activation="relu", kernel_initializer=_init(), name=name)

    def scalar_bn(y, steps: int, name: str):
        """The original's BatchNorm after the permute: one gamma/beta for the whole map."""
        y = layers.Reshape((steps, width, 1), name=f"{name}_expand")(y)
        y = layers.BatchNormalization(name=name)(y)
        return layers.Reshape((steps, width), name=f"{name}_squeeze")(y)

    steps = time - 6
    res1 = layers.BatchNormalization(name="conv1_back_bn")(conv("conv1_back")(x))

    x = layers.ZeroPadding1D(3, name="conv2_back_pad")(res1)
    x = scalar_bn(conv("conv2_back")(x), steps, "conv2_back_bn")
    x = layers.Add(name="res2")([x, res1])
    pooled = layers.MaxPooling1D(2, name="back_timepool")(x)

    steps //= 2
    x = layers.ZeroPadding1D(3, name="conv3_back_pad")(pooled)
    x = scalar_bn(conv("conv3_back")(x), steps, "conv3_back_bn")
    x = layers.Add(name="res3")([x, pooled])

    max_pool = layers.Reshape((width, 1), name="max_expand")(
        layers.GlobalMaxPooling1D(name="global_max")(x)
    )
    mean_pool = layers.Reshape((width, 1), name="mean_expand")(
        layers.GlobalAveragePooling1D(name="global_mean")(x)
    )
    x = layers.Concatenate(axis=-1, name="max_mean")([max_pool, mean_pool])
    x = layers.Flatten(name="flatten")(x)  # interleaved max/mean, as the original

    x = layers.Dropout(dropout, name="dropout1")(x)
    x = layers.Dense(n_dense_units, activation="relu", kernel_initializer=_init(), name="dense")(x)
    x = layers.BatchNormalization(name="dense_bn")(x)
    x = layers.Dropout(dropout, name="dropout2")(x)
    # float32 whatever the dtype policy: under mixed precision the sigmoid and the loss stay exact
    output = layers.Dense(
        n_labels, activation="sigmoid", kernel_initializer=_init(), dtype="float32", name="output"
    )
    return output(x)
