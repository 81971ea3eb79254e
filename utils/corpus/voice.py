"""The voices of the generated sample corpora: espeak-ng speaking deterministic English sentences, or a
synthetic source-filter voice (numpy; speech-like, not speech; byte-identical for the same arguments on the
same machine). Every random draw comes from :func:`seeded_rng`, never from a global state."""

import os
import shutil
import subprocess
import zlib
from math import gcd

import numpy as np
import soundfile as sf

__all__ = [
    "ENGINES",
    "SENTENCES",
    "espeak_available",
    "resolve_engine",
    "seeded_rng",
    "speak",
    "speaker_voice",
    "synthesize",
]

ENGINES = ("auto", "espeak", "synthetic")

SENTENCES = (
    "The old clock in the hall struck nine.",
    "She opened the window and looked at the sea.",
    "A small boat drifted slowly toward the shore.",
    "He said nothing for a long while.",
    "The garden was full of roses and tall grass.",
    "We walked along the river until evening.",
    "The letter arrived on a cold winter morning.",
    "Nobody knew where the road would lead them.",
    "The children laughed as the dog ran in circles.",
    "It rained all night over the quiet village.",
    "Her voice was calm and clear.",
    "The train left the station just after noon.",
    "He kept the key in his coat pocket.",
    "The lamp gave a warm yellow light.",
    "They sat by the fire and told old stories.",
    "A bird sang somewhere in the dark trees.",
    "The captain gave the order to raise the sails.",
    "Bread and cheese were all they had left.",
    "The door creaked as it swung open.",
    "Snow covered the hills by the next day.",
    "Please read the first page aloud.",
    "The market was busy and loud that morning.",
    "Every window in the house was lit.",
    "The path turned sharply to the left.",
    "I will write to you again next week.",
    "The stars were bright above the harbour.",
    "He closed the book and went to sleep.",
    "The wind carried the smell of salt.",
    "Two horses waited patiently by the gate.",
    "The music stopped and the room fell silent.",
    "She wore a long blue dress to the dance.",
    "The bridge was built many years ago.",
)

# Vowel formant targets (F1, F2, F3) in Hz for an adult male vocal tract (Peterson and Barney averages).
_VOWELS = np.array(
    [
        [270, 2290, 3010],  # i
        [390, 1990, 2550],  # I
        [530, 1840, 2480],  # e
        [660, 1720, 2410],  # ae
        [730, 1090, 2440],  # a
        [570, 840, 2410],  # o
        [440, 1020, 2240],  # U
        [300, 870, 2240],  # u
        [640, 1190, 2390],  # ^
        [490, 1350, 1690],  # er
    ],
    dtype=np.float64,
)
_BANDWIDTHS = np.array([80.0, 100.0, 140.0, 200.0])
_FORMANT_AMPS = np.array([1.0, 0.6, 0.35, 0.2])
_ESPEAK_VARIANTS = ("m1", "f2", "m3", "f4", "m2", "f1", "m4", "f3", "m5", "f5", "m6", "m7")
_ESPEAK_VOICES = ("en-us", "en-gb", "en-us", "en-gb-x-rp")


# ----------------------------------------------------------------------------------------------------
# Speakers and randomness
# ----------------------------------------------------------------------------------------------------


def seeded_rng(*keys) -> np.random.Generator:
    """A generator determined by ``keys`` (ints or strings), independent of any global state."""
    words = [k if isinstance(k, int) else zlib.crc32(str(k).encode()) for k in keys]
    return np.random.default_rng(np.random.SeedSequence(words))


def speaker_voice(seed: int, speaker_id: str) -> dict:
    """Voice parameters of one speaker (both engines)."""
    rng = seeded_rng(seed, "speaker", speaker_id)
    female = bool(rng.integers(2))
    index = int(rng.integers(len(_ESPEAK_VARIANTS) // 2)) * 2 + (1 if female else 0)
    return {
        "f0": float(rng.uniform(175, 245) if female else rng.uniform(90, 140)),
        "tract": float(rng.uniform(1.1, 1.22) if female else rng.uniform(0.92, 1.05)),
        "syllable_rate": float(rng.uniform(3.8, 5.5)),
        "breath": float(rng.uniform(0.02, 0.08)),
        "loudness": float(rng.uniform(0.35, 0.7)),
        "espeak_voice": _ESPEAK_VOICES[int(rng.integers(len(_ESPEAK_VOICES)))]
        + "+"
        + _ESPEAK_VARIANTS[index],
        "espeak_pitch": int(rng.integers(30, 71)),
        "espeak_speed": int(rng.integers(150, 191)),
    }


# ----------------------------------------------------------------------------------------------------
# Synthetic engine
# ----------------------------------------------------------------------------------------------------


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Moving average along axis 0 (edges held), ``width`` samples, through a cumulative sum."""
    if width <= 1:
        return x
    pad = [(width // 2 + 1, width - 1 - width // 2)] + [(0, 0)] * (x.ndim - 1)
    csum = np.cumsum(np.pad(x, pad, mode="edge"), axis=0)
    return (csum[width:] - csum[:-width]) / width


def _filter_frames(signal: np.ndarray, gains: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Apply a magnitude response per frame (STFT, multiply, weighted overlap-add).

    ``gains`` is ``(n_frames, n_fft // 2 + 1)``, frame ``i`` centred on sample ``i * hop``.
    """
    n = len(signal)
    window = np.hanning(n_fft + 1)[:-1]
    padded = np.pad(signal, (n_fft // 2, n_fft // 2 + hop))
    n_frames = gains.shape[0]
    starts = np.arange(n_frames) * hop
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[starts] * window
    out_frames = np.fft.irfft(np.fft.rfft(frames, axis=-1) * gains, n=n_fft, axis=-1) * window
    out = np.zeros(len(padded))
    norm = np.zeros(len(padded))
    for i, start in enumerate(starts):
        out[start : start + n_fft] += out_frames[i]
        norm[start : start + n_fft] += window**2
    return (out / np.maximum(norm, 1e-3))[n_fft // 2 : n_fft // 2 + n]


def _resonances(freqs: np.ndarray, centres: np.ndarray, bandwidths: np.ndarray, amps=None) -> np.ndarray:
    """Parallel 2nd-order band-pass resonators: ``sum_k a_k B_k f / |F_k^2 - f^2 + j B_k f|`` per frame.

    Each has gain 1 at its centre and falls by 6 dB per octave away from it. ``centres`` and
    ``bandwidths`` are ``(n_frames, K)``, ``amps`` ``(K,)`` (default ones); returns ``(n_frames, n_bins)``.
    """
    f = freqs[None, None, :]
    c = centres[:, :, None]
    b = bandwidths[:, :, None]
    gains = b * f / np.sqrt((c**2 - f**2) ** 2 + (b * f) ** 2)
    amps = np.ones(centres.shape[1]) if amps is None else np.asarray(amps)
    return np.tensordot(amps, gains, axes=([0], [1]))


def synthesize(n_samples: int, sample_rate: int, speaker: dict, rng: np.random.Generator) -> np.ndarray:
    """A speech-like signal of exactly ``n_samples`` (float64, peak ``speaker["loudness"]``).

    Words of 1-3 syllables (an optional noise consonant, then a voiced vowel with its own formant
    targets), short pauses between words, falling intonation with accents, 0.1-0.2 s of silence at both
    ends and a faint noise floor.
    """
    sr = sample_rate
    tract = speaker["tract"]
    f0 = np.zeros(n_samples)
    vowel_gain = np.zeros(n_samples)
    noise_gain = np.zeros(n_samples)
    formants = np.tile(_VOWELS[8] * tract, (n_samples, 1))
    fricative = np.full(n_samples, 4000.0)

    lead, tail = (int(rng.uniform(0.1, 0.2) * sr) for _ in range(2))
    end = max(lead + 1, n_samples - tail)
    cursor = lead
    syllable = 1.0 / speaker["syllable_rate"]
    while cursor < end:
        for _ in range(int(rng.integers(1, 4))):
            if rng.random() < 0.7:  # consonant onset: a burst of shaped noise
                length = int(rng.uniform(0.04, 0.09) * sr)
                stop = min(cursor + length, end)
                noise_gain[cursor:stop] = np.hanning(stop - cursor + 2)[1:-1] * rng.uniform(0.2, 0.5)
                fricative[cursor:stop] = rng.choice([2500.0, 3500.0, 5000.0, 6500.0]) * tract
                cursor = stop
            length = int(syllable * rng.uniform(0.55, 0.9) * sr)
            stop = min(cursor + length, end)
            if stop - cursor > 1:
                shape = np.sin(np.linspace(0, np.pi, stop - cursor)) ** 0.6
                vowel_gain[cursor:stop] = shape * rng.uniform(0.6, 1.0)
                formants[cursor:stop] = _VOWELS[rng.integers(len(_VOWELS))] * tract * rng.uniform(0.95, 1.05)
                f0[cursor:stop] = rng.uniform(0.95, 1.12)  # accent, scaled below
            cursor = stop
            if cursor >= end:
                break
        cursor += int(rng.uniform(0.04, 0.16 if rng.random() < 0.8 else 0.3) * sr)

    # Pitch: speaker base x accents x declination x slow jitter; held through unvoiced stretches.
    voiced = f0 > 0
    if voiced.any():
        idx = np.where(voiced, np.arange(n_samples), 0)
        np.maximum.accumulate(idx, out=idx)
        f0 = np.where(voiced, f0, f0[idx])
        f0[: np.argmax(voiced)] = f0[np.argmax(voiced)]
    else:
        f0[:] = 1.0
    declination = np.linspace(1.08, 0.9, n_samples)
    jitter = 1 + 0.01 * _smooth(rng.standard_normal(n_samples), max(1, sr // 50))
    f0 = speaker["f0"] * _smooth(f0, max(1, sr // 25)) * declination * jitter
    phase = np.cumsum(f0 / sr)
    saw = (phase % 1.0) - 0.5  # glottal source: harmonics falling by 6 dB per octave

    n_fft = 1 << int(np.ceil(np.log2(0.04 * sr)))
    hop = n_fft // 4
    frame_pos = np.minimum(np.arange((n_samples + hop - 1) // hop + 1) * hop, n_samples - 1)
    freqs = np.fft.rfftfreq(n_fft, 1 / sr)
    tracks = _smooth(formants, max(1, int(0.03 * sr)))[frame_pos]
    f4 = np.full((len(frame_pos), 1), 3500.0 * tract)
    centres = np.concatenate([tracks, f4], axis=1)
    bandwidths = np.tile(_BANDWIDTHS, (len(frame_pos), 1))
    voiced_gains = _resonances(freqs, centres, bandwidths, _FORMANT_AMPS)
    fric_centre = fricative[frame_pos][:, None]
    # Consonants: noise through a broad band-pass (bandwidth 0.7 x centre) made steeper below the centre.
    fric_gains = _resonances(freqs, fric_centre, 0.7 * fric_centre) * np.minimum(freqs / fric_centre, 1.0)

    vowel_sig = _filter_frames(saw, voiced_gains, n_fft, hop)
    noise = rng.standard_normal(n_samples)
    breath_sig = _filter_frames(noise, voiced_gains, n_fft, hop)
    fric_sig = _filter_frames(noise, fric_gains, n_fft, hop)
    for sig in (vowel_sig, breath_sig, fric_sig):
        sig /= np.sqrt(np.mean(sig**2)) + 1e-12
    vowel_env = _smooth(vowel_gain, max(1, int(0.01 * sr)))
    out = vowel_env * (vowel_sig + speaker["breath"] * breath_sig) + noise_gain * fric_sig
    out /= np.abs(out).max() + 1e-12
    out = out * speaker["loudness"] + 3e-4 * rng.standard_normal(n_samples)  # ~ -70 dB noise floor
    return np.clip(out, -1.0, 1.0)


# ----------------------------------------------------------------------------------------------------
# espeak-ng engine
# ----------------------------------------------------------------------------------------------------


def espeak_available() -> bool:
    """Whether ``espeak-ng`` is on ``PATH``."""
    return shutil.which("espeak-ng") is not None


def _resample(audio: np.ndarray, orig: int, target: int) -> np.ndarray:
    if orig == target:
        return audio
    from scipy.signal import resample_poly

    g = gcd(orig, target)
    return resample_poly(audio, target // g, orig // g)


def _espeak(text: str, voice: str, pitch: int, speed: int, workdir: str) -> tuple[np.ndarray, int]:
    path = os.path.join(workdir, "espeak.wav")
    cmd = ["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(speed), "-w", path, text]
    subprocess.run(cmd, check=True, capture_output=True)
    audio, rate = sf.read(path, dtype="float64")
    return (audio.mean(axis=1) if audio.ndim == 2 else audio), rate


def speak(text, speaker, sample_rate, min_seconds, max_seconds, rng, workdir) -> np.ndarray:
    """espeak-ng audio of ``text`` between ``min_seconds`` and ``max_seconds`` long.

    The speaking rate is adjusted towards a random target length; what is still too short is padded with
    silence and what is still too long is cut with a fade-out.
    """
    voice, pitch, speed = speaker["espeak_voice"], speaker["espeak_pitch"], speaker["espeak_speed"]
    audio, rate = _espeak(text, voice, pitch, speed, workdir)
    target = rng.uniform(min_seconds, max_seconds)
    length = len(audio) / rate
    if not min_seconds <= length <= max_seconds:
        speed = int(np.clip(speed * length / target, 80, 450))
        audio, rate = _espeak(text, voice, pitch, speed, workdir)
    audio = _resample(audio, rate, sample_rate)
    low, high = int(np.ceil(min_seconds * sample_rate)), int(max_seconds * sample_rate)
    if len(audio) < low:
        missing = low - len(audio)
        audio = np.pad(audio, (missing // 2, missing - missing // 2))
    elif len(audio) > high:
        audio = audio[:high].copy()
        fade = min(high, int(0.02 * sample_rate))
        audio[high - fade :] *= np.linspace(1, 0, fade)
    peak = np.abs(audio).max()
    return audio / peak * speaker["loudness"] if peak > 0 else audio


def resolve_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise ValueError(f"engine must be 'auto', 'espeak' or 'synthetic', not {engine!r}")
    if engine == "auto":
        return "espeak" if espeak_available() else "synthetic"
    if engine == "espeak" and not espeak_available():
        raise RuntimeError(
            "engine='espeak' needs the espeak-ng program on PATH (Debian/Ubuntu: apt-get install espeak-ng); "
            "use engine='synthetic' to generate without it"
        )
    return engine
