"""Microphone capture with sounddevice (PortAudio): list input devices, record, save.

Samples are captured as int16 (what sound cards deliver, and what a file-backed test device
returns bit for bit) and saved as 16-bit PCM, so the saved file holds exactly what was recorded;
`to_float` gives the float32 signal the rest of Orpheus works with. Every failure (PortAudio
missing, no input device, an unknown device, a stream error) is an `OrpheusError` that lists the
input devices found and how to pick one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from orpheus.errors import OrpheusError


def _sounddevice():
    try:
        import sounddevice
    except OSError:  # the Python package is there, the PortAudio library is not
        raise OrpheusError(
            "cannot record: the PortAudio library is not installed",
            hint="install it (Debian/Ubuntu: apt install libportaudio2; macOS: brew install "
            "portaudio)",
        ) from None
    return sounddevice


def input_devices() -> list[dict]:
    """Every device with input channels: index, name, host API, channels, default rate."""
    sd = _sounddevice()
    try:
        devices = sd.query_devices()
        apis = sd.query_hostapis()
    except sd.PortAudioError as exc:
        raise OrpheusError(f"cannot list sound devices: {exc}") from None
    return [
        {
            "index": int(d["index"]),
            "name": d["name"],
            "hostapi": apis[d["hostapi"]]["name"],
            "channels": int(d["max_input_channels"]),
            "samplerate": float(d["default_samplerate"]),
        }
        for d in devices
        if d["max_input_channels"] > 0
    ]


def describe(devices: list[dict]) -> str:
    """One line naming the devices, for error messages."""
    if not devices:
        return "no input devices found"
    return "input devices: " + "; ".join(f"{d['index']}: {d['name']}" for d in devices)


def _choice_error(message: str, devices: list[dict]) -> OrpheusError:
    hint = (
        "pick one with --device NAME|INDEX (see `orpheus record --list-devices`)"
        if devices
        else "connect a microphone (or check that PortAudio/ALSA can see it), then run "
        "`orpheus record --list-devices`"
    )
    return OrpheusError(f"{message} ({describe(devices)})", hint=hint)


def find_device(device: str | int | None) -> dict:
    """The input device named (exactly or by a unique substring) or numbered, or the default."""
    devices = input_devices()
    if not devices:
        raise _choice_error("cannot record: no audio input device", devices)
    if device is None:
        sd = _sounddevice()
        default = sd.default.device[0] if sd.default.device[0] is not None else -1
        chosen = [d for d in devices if d["index"] == default] or devices[:1]
        return chosen[0]
    text = str(device).strip()
    if text.isdigit():
        chosen = [d for d in devices if d["index"] == int(text)]
    else:
        chosen = [d for d in devices if d["name"] == text] or [
            d for d in devices if text.lower() in d["name"].lower()
        ]
    if len(chosen) != 1:
        what = "no" if not chosen else "more than one"
        raise _choice_error(f"{what} input device matches {text!r}", devices)
    return chosen[0]


def record(
    seconds: float, *, device: str | int | None = None, samplerate: int | None = None
) -> tuple[np.ndarray, int, dict]:
    """Record mono int16 audio: (samples, rate, the device used). Blocks for `seconds`."""
    if seconds <= 0:
        raise OrpheusError(f"--seconds must be > 0, got {seconds:g}")
    chosen = find_device(device)
    rate = int(samplerate or chosen["samplerate"])
    sd = _sounddevice()
    try:
        data = sd.rec(
            int(round(seconds * rate)), samplerate=rate, channels=1, dtype="int16",
            device=chosen["index"],
        )  # fmt: skip
        sd.wait()
    except (sd.PortAudioError, ValueError) as exc:
        raise _choice_error(
            f"cannot record from {chosen['name']!r}: {exc}", input_devices()
        ) from None
    return data[:, 0].copy(), rate, chosen


def to_float(samples: np.ndarray) -> np.ndarray:
    """int16 samples to float32 in [-1, 1), as soundfile reads 16-bit PCM."""
    return (np.asarray(samples, dtype=np.int16).astype(np.float32) / 32768.0).astype(np.float32)


def save(path: Path, samples: np.ndarray, rate: int) -> Path:
    """Write int16 samples as 16-bit PCM (format from the suffix, WAV by default), atomically."""
    import soundfile as sf

    from orpheus.io import write_atomic_via

    path = Path(path)
    fmt = sf.check_format(path.suffix.lstrip(".").upper()) if path.suffix else False
    if not fmt:
        raise OrpheusError(
            f"cannot save a recording as {path.name!r}",
            hint="use a .wav, .flac, .ogg or .mp3 name",
        )
    kind = path.suffix.lstrip(".").upper()
    subtype = "PCM_16" if kind in ("WAV", "FLAC", "AIFF") else None

    def write(fh):
        sf.write(fh, np.asarray(samples, dtype=np.int16), rate, format=kind, subtype=subtype)

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic_via(path, write)
    return path
