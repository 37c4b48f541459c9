"""Builds a small SYNTHETIC co-speech gesture corpus: espeak-ng speech + rule-based HUMANOID motion, paired by stem.

Why: real gesture captures (BEAT, ZEGGS, GENEA) cannot be downloaded here, yet the data loader, training loop and
evaluation need paired speech and motion in their layout. The corpus is synthetic and says so everywhere (the
manifest's ``"synthetic": true``, a README in the folder): it checks plumbing and timing, it does not teach
natural gesture.

Layout written to ``out_dir``: ``train/`` and ``held-out/``, each with ``<speaker>_<n>.wav`` (16 kHz mono PCM16) and
``<speaker>_<n>.bvh`` (HUMANOID, 30 fps, root translation and offsets in CENTIMETRES, rotations in degrees, as
BEAT/ZEGGS exports; read with ``read_bvh(p).to_poses(0.01)``), so each split is a folder that ``dimgestor train``
and ``dimgestor eval`` take as it is; ``manifest.json`` and ``README.md`` at the top. Same seed and arguments:
byte-identical files.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from dimgestor_ros.corpus.gestures import FPS, SpeakerStyle, generate_gestures
from dimgestor_ros.corpus.sentences import SENTENCES, is_held_out
from dimgestor_ros.errors import UserError
from dimgestor_ros.motion.bvh import BvhMotion, write_bvh
from dimgestor_ros.motion.skeleton import HUMANOID

SAMPLE_RATE = 16000
UNIT_SCALE = 0.01  # metres per BVH length unit: the BVH files are in centimetres
LEVEL_RANGE_DB = (-16.0, 0.0)  # per-sentence speech level, relative to a 0.5 full-scale peak
TRAIN, HELD_OUT = "train", "held-out"


@dataclass(frozen=True)
class SpeakerProfile:
    """A synthetic speaker: an espeak-ng voice per language, a speaking rate and pitch range, a gesture style."""

    name: str
    style: SpeakerStyle
    voices: dict[str, str]  # language -> espeak-ng voice (language + variant)
    rate: tuple[int, int]  # words per minute, drawn per clip
    pitch: tuple[int, int]  # espeak-ng pitch 0-99, drawn per clip
    held_out: bool = False  # default split of this speaker


# Voice variant -> (handedness, favoured gestures). In this corpus a speaker's style follows the voice, so that a
# style heard in speech generalises to speakers never seen: the variant (timbre) sets handedness and favoured
# gestures, the pitch sets the size of strokes, the speaking rate their tempo; sway and lift are the speaker's own.
# Real speakers are only partly like this; the rule is a convention of the synthetic data, stated in its README.
VOICE_STYLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "m1": ("right", ("beat", "point")), "m2": ("both", ("beat", "open")), "m3": ("left", ("beat", "nod")),
    "m4": ("right", ("nod", "beat")), "m5": ("both", ("open",)), "m6": ("left", ("open", "point")),
    "m7": ("right", ("beat",)), "f1": ("left", ("beat", "open")), "f2": ("both", ("beat", "point")),
    "f3": ("right", ("open", "nod")), "f4": ("left", ("point", "beat")), "f5": ("both", ("beat", "nod")),
}
ACCENTS = ("en-us", "en-gb", "en-gb-x-rp")
ROSTER_NAMES = ("ana", "ben", "chen", "dara", "eli", "fay", "gus", "hana", "ivo", "jun", "kai", "lea",
                "mo", "nia", "omar", "pia", "rui", "sam", "tao", "uma", "vik", "wen", "xin", "yara")
ROSTER_HELD_OUT = ("mo", "omar", "wen", "xin")  # their voice variants are also spoken by training speakers
ROSTER_SEED = 2026  # the roster is fixed: a speaker's name means the same voice and style in every corpus


def style_for_voice(variant: str, pitch: float, rate: float, rng: np.random.Generator) -> SpeakerStyle:
    """The gesture style of a speaker with this voice variant, mean espeak-ng pitch and rate (words per minute).

    Higher voices make bigger strokes (amplitude 0.55 at pitch 30 to 1.5 at pitch 75), faster talkers shorter
    ones (0.42 s at 160 wpm, inversely with rate), each with a few per cent of the speaker's own variation.
    """
    handedness, gestures = VOICE_STYLES[variant]
    amplitude = float(np.clip(0.55 + 0.95 * (pitch - 30.0) / 45.0, 0.55, 1.5) * rng.uniform(0.93, 1.07))
    stroke_duration = float(np.clip(0.42 * 160.0 / rate * rng.uniform(0.94, 1.06), 0.3, 0.7))
    return SpeakerStyle(amplitude=round(amplitude, 3), stroke_duration=round(stroke_duration, 3),
                        handedness=handedness, gestures=gestures, sway=round(float(rng.uniform(0.5, 1.2)), 3),
                        lift=round(float(rng.uniform(0.7, 1.0)), 3))


def speaker_roster() -> dict[str, SpeakerProfile]:
    """The corpus's 24 speakers: speaker i speaks with variant i mod 12 in accent i mod 3 (English) and
    Mandarin; mean pitch 30-75 and rate 135-185 wpm drawn from ROSTER_SEED; ROSTER_HELD_OUT form the held-out split."""
    rng = np.random.default_rng(ROSTER_SEED)
    variants = list(VOICE_STYLES)
    roster = {}
    for index, name in enumerate(ROSTER_NAMES):
        variant = variants[index % len(variants)]
        pitch, rate = int(rng.integers(30, 76)), int(rng.integers(135, 186))
        voices = {"en": f"{ACCENTS[index % len(ACCENTS)]}+{variant}", "cmn": f"cmn+{variant}"}
        roster[name] = SpeakerProfile(name, style_for_voice(variant, pitch, rate, rng), voices,
                                      (rate - 8, rate + 8), (max(0, pitch - 5), pitch + 5),
                                      held_out=name in ROSTER_HELD_OUT)
    return roster


SPEAKERS: dict[str, SpeakerProfile] = speaker_roster()

README = """# Synthetic co-speech gesture corpus (NOT real motion capture)

Generated by `dimgestor_ros.corpus.synthetic` (`dimgestor make-corpus`). Speech is espeak-ng text-to-speech;
motion is rule-based (beat strokes on speech onsets, size from loudness, rest with breathing in silence) on the
`dimgestor_humanoid` skeleton. Use it to test loaders, training loops and timing, not to judge gesture quality.

- `train/` and `held-out/`: one folder per split, so `dimgestor train --data train --val-data held-out` and
  `dimgestor eval --reference held-out` take them directly.
- `<split>/<speaker>_<n>.wav`: 16 kHz mono PCM16.
- `<split>/<speaker>_<n>.bvh`: {fps:g} fps; root translation and offsets in centimetres (unit_scale 0.01), rotations in
  degrees, ZXY channel order; read with `read_bvh(path).to_poses(0.01)`.
- `manifest.json`: per clip its path (without suffix), speaker, speech level per sentence (dB), language, voice, rate, pitch, text, duration, speech segments, beat times
  (stroke apexes, seconds), split. `train` = training speakers saying training sentences; `held-out` = held-out
  speakers ({held_out}) saying held-out sentences (never seen in training).
- Speakers: a fixed roster of 24 (`speaker_roster()`); in this corpus a speaker's gesture style follows the
  voice (variant → handedness and favoured gestures, pitch → stroke size, rate → stroke tempo), a convention that
  lets a style heard in speech generalise to unseen speakers. Real speakers are only partly like that.
- Recording conditions vary per clip (noise floor -75 to -42 dBFS, some reverberation, some band-limiting); the
  motion follows the clean speech.
- Seed {seed}; the same seed and arguments give byte-identical files.
"""


def _espeak_binary(command: str = "espeak-ng") -> str:
    path = shutil.which(command)
    if path is None:
        raise UserError(f"{command} not found: the synthetic corpus speaks with espeak-ng; "
                        "install it with 'sudo apt-get install espeak-ng' (or scripts/setup_env.sh as root)")
    return path


def speak(text: str, voice: str, rate: int, pitch: int, espeak: str) -> np.ndarray:
    """Mono float32 speech at SAMPLE_RATE from espeak-ng (which renders at 22.05 kHz)."""
    import soundfile

    from dimgestor_ros.audio.io import resample, to_mono_float32

    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        result = subprocess.run([espeak, "-v", voice, "-s", str(rate), "-p", str(pitch), "--stdin", "-w", str(wav)],
                                input=text.encode("utf-8"), capture_output=True, check=False)
        if result.returncode != 0 or not wav.is_file():
            raise UserError(f"espeak-ng failed for voice {voice!r}: {result.stderr.decode(errors='replace').strip()}; "
                            "check 'espeak-ng --voices' lists the language")
        samples, rate_hz = soundfile.read(str(wav), dtype="float32", always_2d=True)
    return resample(to_mono_float32(samples), int(rate_hz), SAMPLE_RATE)


def _clip_rng(seed: int, speaker: str, index: int) -> np.random.Generator:
    # crc32, not hash(): Python salts str hashes per process, which would break determinism.
    return np.random.default_rng([seed, zlib.crc32(speaker.encode()), index])


def _compose(sentences: list[np.ndarray], rng: np.random.Generator
             ) -> tuple[np.ndarray, list[tuple[float, float]], list[float]]:
    """Sentences joined by pauses, with 1.2-1.5 s of silence before and after (for rest motion); speech segments
    and each sentence's level.

    Each sentence is spoken at its own level (peak LEVEL_RANGE_DB below 0.5 full scale), so the corpus holds
    quiet and loud speech, within a clip and across clips: the gesture rules size strokes by absolute loudness,
    and a model can only learn "louder is bigger" from data whose loudness varies.
    """
    parts, segments, cursor = [], [], 0
    gaps = [rng.uniform(1.2, 1.5)] + [rng.uniform(0.6, 1.0) for _ in sentences[1:]] + [rng.uniform(1.2, 1.5)]
    levels = [float(rng.uniform(*LEVEL_RANGE_DB)) for _ in sentences]
    for gap, speech, level in zip(gaps, sentences + [None], levels + [0.0]):
        silence = np.zeros(int(gap * SAMPLE_RATE), dtype=np.float32)
        parts.append(silence)
        cursor += len(silence)
        if speech is not None:
            speech = 0.5 * 10 ** (level / 20) * speech / max(float(np.max(np.abs(speech))), 1e-6)
            parts.append(speech.astype(np.float32))
            segments.append((cursor / SAMPLE_RATE, (cursor + len(speech)) / SAMPLE_RATE))
            cursor += len(speech)
    return np.concatenate(parts), segments, levels


def _record(speech: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The clip as a microphone in a room hears it: sometimes reverberant (RT60 0.15-0.6 s), sometimes band-limited
    (low-pass 3.5-7.5 kHz, as phone and compressed recordings are), always over a noise floor of -75 to -42 dBFS
    (white or rumbling), then PCM16-quantised.

    Why: espeak-ng speech over digital silence is far from what a microphone delivers; a model trained on it
    alone takes any real room's noise floor for speech and real recordings for something it never heard.
    The gesture rules look at the clean speech, so conditions change the audio, not the motion.
    """
    from scipy.signal import butter, fftconvolve, sosfilt

    audio = speech.astype(np.float64)
    if rng.random() < 0.5:
        rt60 = rng.uniform(0.15, 0.6)
        t = np.arange(int(rt60 * SAMPLE_RATE)) / SAMPLE_RATE
        tail = rng.standard_normal(len(t)) * np.exp(-6.91 * t / rt60)  # -60 dB at rt60
        tail *= 10 ** (-rng.uniform(3.0, 12.0) / 20) / max(np.sqrt(np.sum(tail**2)), 1e-9)  # direct-to-reverb ratio
        tail[0] += 1.0  # the direct sound
        audio = fftconvolve(audio, tail)[: len(audio)]
    if rng.random() < 0.6:
        audio = sosfilt(butter(6, rng.uniform(3500.0, 7500.0), fs=SAMPLE_RATE, output="sos"), audio)
    noise = rng.standard_normal(len(audio))
    if rng.random() < 0.5:
        noise = sosfilt(butter(2, rng.uniform(150.0, 1000.0), fs=SAMPLE_RATE, output="sos"), noise)
    noise *= 10 ** (rng.uniform(-75.0, -42.0) / 20) / max(float(np.sqrt(np.mean(noise**2))), 1e-12)
    audio = np.clip(audio + noise, -1.0, 1.0)
    return (np.round(audio * 32767.0) / 32767.0).astype(np.float32)  # exactly what PCM16 stores


def build_corpus(out_dir: str | Path, clips_per_speaker: int, seed: int = 0, languages: Sequence[str] = ("en", "cmn"),
                 speakers: Sequence[str] | None = None, held_out_speakers: Sequence[str] | None = None,
                 max_sentences: int = 2) -> dict:
    """Write the synthetic corpus into ``out_dir`` and return its manifest.

    ``speakers``: names from SPEAKERS (default all); ``held_out_speakers``: those whose clips form the held-out
    split (default: the profiles marked held_out). Clips alternate languages; each has 1..``max_sentences``
    sentences.
    """
    import soundfile

    espeak = _espeak_binary()
    names = list(SPEAKERS) if speakers is None else list(speakers)
    unknown = [n for n in names if n not in SPEAKERS]
    if unknown or not names:
        raise UserError(f"unknown speaker(s) {unknown or names}; choose from {', '.join(SPEAKERS)}")
    held = {n for n in names if SPEAKERS[n].held_out} if held_out_speakers is None else set(held_out_speakers)
    if held - set(names):
        raise UserError(f"held-out speaker(s) {sorted(held - set(names))} are not among the speakers {names}")
    bad_languages = [lang for lang in languages if lang not in SENTENCES]
    if bad_languages or not languages:
        raise UserError(f"unsupported language(s) {bad_languages or list(languages)}; "
                        f"choose from {', '.join(SENTENCES)}")
    if clips_per_speaker < 1 or max_sentences < 1:
        raise UserError("clips_per_speaker and max_sentences must be at least 1")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    foreign = [p.name for p in out.iterdir()
               if not (p.is_dir() and p.name in (TRAIN, HELD_OUT)) and p.suffix not in (".json", ".md")]
    if foreign or (any(out.iterdir()) and not (out / "manifest.json").is_file()):
        raise UserError(f"{out} holds files that are not a synthetic corpus; choose an empty or new folder")
    for split in (TRAIN, HELD_OUT):
        (out / split).mkdir(exist_ok=True)
        for stale in list((out / split).glob("*.wav")) + list((out / split).glob("*.bvh")):
            stale.unlink()  # a rebuild into the same folder must not keep clips of an earlier, larger build

    clips = []
    for name in names:
        profile = SPEAKERS[name]
        split = HELD_OUT if name in held else TRAIN
        for n in range(clips_per_speaker):
            rng = _clip_rng(seed, name, n)
            language = languages[n % len(languages)]
            pool = [i for i, _ in enumerate(SENTENCES[language]) if is_held_out(i) == (split == HELD_OUT)]
            chosen = [int(i) for i in rng.choice(pool, size=min(int(rng.integers(1, max_sentences + 1)), len(pool)),
                                                 replace=False)]
            rate, pitch = int(rng.integers(*profile.rate, endpoint=True)), int(rng.integers(*profile.pitch,
                                                                                            endpoint=True))
            voice = profile.voices[language]
            speech = [speak(SENTENCES[language][i], voice, rate, pitch, espeak) for i in chosen]
            clean, segments, levels = _compose(speech, rng)
            track = generate_gestures(clean, SAMPLE_RATE, profile.style, rng)
            audio = _record(clean, rng)
            stem = f"{name}_{n}"
            soundfile.write(str(out / split / f"{stem}.wav"), audio, SAMPLE_RATE, subtype="PCM_16")
            write_bvh(BvhMotion.from_poses(HUMANOID, track.poses, 1.0 / FPS, UNIT_SCALE), out / split / f"{stem}.bvh")
            clips.append({
                "name": stem, "path": f"{split}/{stem}", "speaker": name, "language": language, "voice": voice, "rate": rate, "pitch": pitch,
                "sentence_ids": [f"{language}-{i:02d}" for i in chosen],
                "text": " ".join(SENTENCES[language][i] for i in chosen),
                "duration": round(len(audio) / SAMPLE_RATE, 4), "frames": int(track.poses.shape[0]),
                "speech_segments": [[round(a, 4), round(b, 4)] for a, b in segments],
                "speech_levels_db": [round(level, 2) for level in levels],
                "beat_times": [round(float(t), 4) for t in track.beats],
                "gestures": [kind for _, _, kind in track.phrases], "split": split, "synthetic": True,
            })
    manifest = {
        "synthetic": True,
        "description": "SYNTHETIC corpus: espeak-ng speech and rule-based motion, not motion capture",
        "generator": "dimgestor_ros.corpus.synthetic", "seed": seed, "languages": list(languages),
        "sample_rate": SAMPLE_RATE, "fps": FPS, "skeleton": HUMANOID.name, "bvh_unit": "cm", "unit_scale": UNIT_SCALE,
        "speakers": {n: {"held_out": n in held, "voices": SPEAKERS[n].voices, **asdict(SPEAKERS[n].style)}
                     for n in names},
        "clips": clips,
    }
    text = json.dumps(manifest, indent=1, ensure_ascii=False)
    (out / "manifest.json").write_text(text + "\n", encoding="utf-8")
    (out / "README.md").write_text(README.format(fps=FPS, held_out=", ".join(sorted(held)) or "none", seed=seed),
                                   encoding="utf-8")
    return json.loads(text)  # exactly what the file holds (lists, not tuples)


def add_make_corpus_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``make-corpus`` on the CLI's subparsers (handler: run_make_corpus)."""
    parser = subparsers.add_parser(
        "make-corpus", help="build a small SYNTHETIC speech + gesture corpus (espeak-ng + rule-based motion)",
        description="Write <speaker>_<n>.wav/.bvh pairs into OUT_DIR/train and OUT_DIR/held-out, with manifest.json and "
        "README.md. Synthetic data "
        "for testing loaders and training loops; needs espeak-ng.")
    parser.add_argument("out_dir", type=Path, help="folder to write (new, empty, or an earlier synthetic corpus)")
    parser.add_argument("--clips-per-speaker", type=int, default=8, help="clips per speaker (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed, same files (default 0)")
    parser.add_argument("--languages", nargs="+", default=["en", "cmn"], choices=sorted(SENTENCES),
                        help="languages, alternated per clip (default: en cmn)")
    parser.add_argument("--speakers", nargs="+", choices=list(SPEAKERS), help="speakers (default: all)")
    parser.add_argument("--held-out-speakers", nargs="*",
                        help=f"speakers of the held-out split (default: {' '.join(ROSTER_HELD_OUT)})")
    parser.add_argument("--max-sentences", type=int, default=2, help="sentences per clip, at most (default 2)")
    parser.set_defaults(handler=run_make_corpus)
    return parser


def run_make_corpus(args: argparse.Namespace) -> int:
    manifest = build_corpus(args.out_dir, args.clips_per_speaker, seed=args.seed, languages=tuple(args.languages),
                            speakers=args.speakers, held_out_speakers=args.held_out_speakers,
                            max_sentences=args.max_sentences)
    clips = manifest["clips"]
    held = sum(c["split"] == HELD_OUT for c in clips)
    hours = sum(c["duration"] for c in clips) / 3600.0
    print(f"wrote {len(clips)} synthetic clips ({hours * 60:.1f} min; {len(clips) - held} train, {held} held-out) "
          f"to {args.out_dir}")
    return 0
