"""Audio sources behind one interface: a file paced like a microphone, a live microphone, pushed samples.

Every source yields mono float32 chunks at the model's sample rate with the index of their first sample, so the
streaming generator can stamp motion by audio time rather than by when inference happened to run.

Live sources also say how much captured audio waits to be read (``backlog_seconds``) and can drop the oldest of
it (``drop_oldest``), so a consumer that falls behind bounds its delay instead of queueing without end; ``pause``
stops capturing (a managed node's deactivation) and ``start`` resumes. A microphone also says when it has stopped
delivering audio (``MicSource.stalled``: unplugged, its PulseAudio source removed) and can be opened again once it
is back (``MicSource.reopen``).
"""

from __future__ import annotations

import math
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import UserError
from .io import AudioFileStream, AudioStats, to_mono_float32

AUDIO_SOURCE_KINDS = ("auto", "mic", "file", "topic")


@dataclass
class AudioChunk:
    samples: np.ndarray  # (n,) float32 mono at the source's sample_rate
    start_sample: int  # index of samples[0] since the stream started


class AudioSource(Protocol):
    sample_rate: int

    def start(self) -> None:
        """Start capturing, or resume after ``pause``."""

    def pause(self) -> None:
        """Stop capturing until the next ``start``; what was captured and not read is discarded."""

    def read(self, timeout: float) -> AudioChunk | None:
        """Next chunk, or None if none arrived within ``timeout`` seconds."""

    def backlog_seconds(self) -> float:
        """Audio captured (or due, for a paced file) but not read yet."""

    def drop_oldest(self, keep_seconds: float) -> int:
        """Discard the oldest unread audio until about ``keep_seconds`` remain; the samples dropped (model rate)."""

    @property
    def finished(self) -> bool:
        """True once the source will never yield another chunk (end of file)."""

    def close(self) -> None: ...


class FileSource:
    """Streams a speech file in chunks, paced in real time (like a microphone) or as fast as possible.

    The file is decoded as it is read (AudioFileStream), about half a second ahead: an hour-long recording does not
    sit in memory as 230 MB of float32, and configuring the node does not wait for a whole file to decode.
    """

    def __init__(
        self,
        path: str | Path,
        sample_rate: int,
        chunk_seconds: float = 0.1,
        realtime: bool = True,
        loop: bool = False,
    ) -> None:
        self.sample_rate = sample_rate
        self.stats = AudioStats()
        self._stream = AudioFileStream(path, sample_rate, self.stats, block_seconds=0.5)
        self.chunk_samples = max(1, int(round(chunk_seconds * sample_rate)))
        self.realtime = realtime
        self.loop = loop
        self._position = 0  # samples handed out or dropped so far (grows past the file's length when looping)
        self._start_time: float | None = None
        self._closed = False
        self.error: str | None = None  # why the file ended early (unreadable further in), if it did

    @property
    def duration(self) -> float:
        """Seconds of audio, as the file's header states them."""
        return self._stream.duration_s

    def start(self) -> None:
        """Start pacing, or resume it after ``pause``: the next chunk is due one chunk from now, wherever the
        file stopped (a file is not live, so nothing was missed meanwhile)."""
        self._start_time = time.monotonic() - self._position / self.sample_rate

    def pause(self) -> None:
        self._start_time = None

    @property
    def finished(self) -> bool:
        return self._closed or (not self.loop and self._stream.exhausted)

    def _due_samples(self) -> int:
        """Samples a paced file has made available but not handed out (0 unpaced: never behind); near the end of
        a file that does not loop, at most what the header says is left."""
        if not self.realtime or self._start_time is None:
            return 0
        due = int((time.monotonic() - self._start_time) * self.sample_rate) - self._position
        if not self.loop:
            due = min(due, int(self.duration * self.sample_rate) - self._position)
        return max(0, due)

    def backlog_seconds(self) -> float:
        return self._due_samples() / self.sample_rate

    def drop_oldest(self, keep_seconds: float) -> int:
        """Skip ahead in the file, as a microphone's dropped audio would be gone."""
        wanted = max(0, self._due_samples() - int(max(0.0, keep_seconds) * self.sample_rate))
        dropped = 0
        while dropped < wanted:
            skipped = len(self._take(min(wanted - dropped, self.chunk_samples)))  # a chunk at a time: memory stays flat
            if not skipped:
                break
            dropped += skipped
        self._position += dropped
        return dropped

    def _take(self, count: int) -> np.ndarray:
        """The next ``count`` samples of the file, wrapping to its start when looping; fewer only at its end.

        A file that turns unreadable part-way (damaged data after a good start) ends there: the stream keeps what
        was readable and ``error`` says why it stopped, rather than a running node failing on it."""
        try:
            samples = self._stream.read(count)
            while self.loop and len(samples) < count:
                self._stream.rewind()
                samples = np.concatenate([samples, self._stream.read(count - len(samples))])
        except UserError as error:
            self.error = str(error)
            self.close()
            return np.zeros(0, dtype=np.float32)
        return samples

    def read(self, timeout: float) -> AudioChunk | None:
        if self._start_time is None:
            self.start()
        if self.finished:
            return None
        if self.realtime:
            # A chunk is "captured" once wall-clock time has passed its last sample (the file's last, at its end).
            end = self._position + self.chunk_samples
            if not self.loop:
                end = min(end, int(self.duration * self.sample_rate))
            wait = self._start_time + end / self.sample_rate - time.monotonic()
            if wait > timeout:
                time.sleep(max(0.0, timeout))
                return None
            if wait > 0:
                time.sleep(wait)
        samples = self._take(self.chunk_samples)
        if not len(samples):
            return None  # the file ended on a chunk's edge: now finished
        chunk = AudioChunk(samples, self._position)
        self._position += len(samples)
        return chunk

    def close(self) -> None:
        self._closed = True
        self._stream.close()


class PushSource:
    """Audio pushed in from elsewhere (a ROS audio topic): any length, rate or channel count per push, each
    downmixed and resampled to the model rate.

    One resampler runs for as long as the rate stays the same, so message edges add no clicks (resampling each
    message on its own treats its edges as silence; see MicSource). When the rate changes, the old resampler's
    tail is flushed first, so no audio is lost or reordered; ``format_changes`` counts rate and channel-count
    changes between pushes.
    """

    def __init__(self, sample_rate: int, max_queued_chunks: int = 256) -> None:
        self.sample_rate = sample_rate
        self._queue: queue.Queue[np.ndarray] = queue.Queue(maxsize=max_queued_chunks)
        self._queued_samples = 0  # samples in the queue, for backlog_seconds (pushed and read on other threads)
        self._lock = threading.Lock()
        self._position = 0
        self.dropped_chunks = 0
        self.stats = AudioStats()
        self.format_changes = 0
        self.input_rate: int | None = None  # rate and channel count of the last push
        self.input_channels: int | None = None
        self._resampler = None

    def start(self) -> None:
        pass

    def pause(self) -> None:
        self.drop_oldest(0.0)

    @property
    def finished(self) -> bool:
        return False

    def backlog_seconds(self) -> float:
        return self._queued_samples / self.sample_rate

    def drop_oldest(self, keep_seconds: float) -> int:
        """Discard whole queued chunks, oldest first, while more than ``keep_seconds`` would remain."""
        keep = max(0.0, keep_seconds) * self.sample_rate
        dropped = 0
        while True:
            with self._lock:
                head = self._queue.queue[0] if self._queue.qsize() else None
                if head is None or self._queued_samples - len(head) < keep:
                    break
                self._queue.get_nowait()
                self._queued_samples -= len(head)
            dropped += len(head)
        self._position += dropped
        return dropped

    def push(self, samples: np.ndarray, sample_rate: int) -> None:
        """Queue (frames,) or (frames, channels) samples at ``sample_rate``; ValueError for other shapes or rates."""
        samples = np.asarray(samples)
        if samples.ndim not in (1, 2) or (samples.ndim == 2 and samples.shape[1] < 1):
            raise ValueError(f"audio must be (frames,) or (frames, channels), got shape {samples.shape}")
        sample_rate = int(sample_rate)
        if sample_rate <= 0:
            raise ValueError(f"sample rate must be positive, got {sample_rate}")
        channels = 1 if samples.ndim == 1 else samples.shape[1]
        pieces = []
        if sample_rate != self.input_rate:
            if self._resampler is not None:  # hand out what the old rate's resampler still holds
                pieces.append(self._resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
            self._resampler = None
            if sample_rate != self.sample_rate:
                import soxr

                self._resampler = soxr.ResampleStream(sample_rate, self.sample_rate, 1, dtype="float32")
        if self.input_rate is not None and (sample_rate, channels) != (self.input_rate, self.input_channels):
            self.format_changes += 1
        self.input_rate, self.input_channels = sample_rate, channels
        mono = to_mono_float32(samples, self.stats)
        pieces.append(self._resampler.resample_chunk(mono) if self._resampler is not None else mono)
        out = np.concatenate(pieces) if len(pieces) > 1 else pieces[0]
        if not len(out):  # an empty message, or the resampler holding back its filter delay
            return
        with self._lock:
            try:
                self._queue.put_nowait(np.ascontiguousarray(out, dtype=np.float32))
                self._queued_samples += len(out)
            except queue.Full:
                self.dropped_chunks += 1

    def read(self, timeout: float) -> AudioChunk | None:
        try:
            samples = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        with self._lock:
            self._queued_samples -= len(samples)
        chunk = AudioChunk(samples, self._position)
        self._position += len(samples)
        return chunk

    def close(self) -> None:
        pass


def samples_from_multiarray(data, dims, data_offset: int = 0) -> np.ndarray:
    """Audio samples from a std_msgs/Float32MultiArray's data and layout (dims: (label, size) pairs).

    No dimension: mono. One: mono, its size the sample count. Two: (frames, channels) interleaved, the
    MultiArray's row-major order; a first dimension labelled 'channel...' means planar (channels, frames).
    Raises ValueError saying why when the layout contradicts the data, so a truncated or misdescribed message is
    refused rather than played as the wrong audio.
    """
    values = np.asarray(data, dtype=np.float32)
    if data_offset < 0 or data_offset > len(values):
        raise ValueError(f"data_offset {data_offset} is outside the {len(values)} values")
    values = values[data_offset:]
    dims = list(dims)
    if len(dims) > 2:
        raise ValueError(f"{len(dims)} layout dimensions; audio has at most 2 (frames, channels)")
    if not dims:
        return values
    sizes = [int(size) for _, size in dims]
    if len(dims) == 1:
        if sizes[0] != len(values):
            raise ValueError(f"layout says {sizes[0]} samples but the message holds {len(values)}")
        return values
    if sizes[0] * sizes[1] != len(values):
        raise ValueError(f"layout {sizes[0]} x {sizes[1]} does not match the {len(values)} values of the message")
    if not len(values):
        return values
    planar = str(dims[0][0]).lower().startswith("channel")
    if planar:
        return values.reshape(sizes[0], sizes[1]).T
    return values.reshape(sizes[0], sizes[1])


def _import_sounddevice():
    """sounddevice needs the PortAudio C library; import it only when a microphone is really asked for."""
    try:
        import sounddevice
    except OSError:
        raise UserError(
            "the PortAudio library is missing, so no microphone can be opened: install it with "
            "'sudo apt-get install libportaudio2', or use audio_source:=file"
        ) from None
    return sounddevice


def _refresh_device_list(sounddevice) -> None:
    """Make PortAudio list the devices there are now.

    PortAudio reads its device list once, when it is initialised (at ``import sounddevice``), so a microphone
    plugged in (or a PulseAudio server started) later is not seen, and one unplugged is still listed.
    Re-initialising is the way sounddevice's maintainers give to rescan (spatialaudio/python-sounddevice#125); it
    also ends every stream PortAudio has open, so it is only called when this process has none open.
    """
    sounddevice._terminate()
    sounddevice._initialize()


def has_input_device() -> bool:
    """True when PortAudio is installed and lists a default input device (used by audio_source 'auto')."""
    try:
        sounddevice = _import_sounddevice()
    except UserError:
        return False
    try:
        device = sounddevice.query_devices(kind="input")
    except (ValueError, sounddevice.PortAudioError):
        return False
    return bool(device) and device.get("max_input_channels", 0) > 0


class MicSource:
    """A live microphone opened at the device's own rate and channel count, downmixed and resampled.

    A device can go away while it is recording (unplugged; its PulseAudio source removed): PortAudio then ends
    the stream or simply stops calling back. ``stalled`` tells, and ``reopen`` opens the device again once it is
    back (raising UserError while it is not), so a consumer can hold its output meanwhile and resume after.
    """

    def __init__(self, sample_rate: int, device: str | int | None = None, block_seconds: float = 0.05) -> None:
        self.sample_rate = sample_rate
        self.device = device if device not in ("", None) else None
        self.block_seconds = block_seconds
        self._sounddevice = _import_sounddevice()
        self._queue: queue.Queue[np.ndarray] = queue.Queue(maxsize=512)
        self._position = 0
        self.overflows = 0
        self.stats = AudioStats()
        self._stream = None
        self._capturing = False  # between start() and pause()/close(): the device should be delivering
        self._last_block = time.monotonic()  # when the device last delivered a block (PortAudio thread)
        try:
            self._open()
        except UserError:
            # The list PortAudio read at import may be stale (a device plugged in, or a PulseAudio server started,
            # since): look again before giving up. Nothing of this process is recording yet.
            _refresh_device_list(self._sounddevice)
            self._open()

    def _open(self) -> None:
        """Query the device and open a capture stream on it (not started); UserError naming the fix if impossible."""
        sounddevice = self._sounddevice
        try:
            info = sounddevice.query_devices(self.device, kind="input")
        except (ValueError, sounddevice.PortAudioError) as error:
            raise UserError(
                f"no audio input device found ({error}); connect a microphone, pick one with the "
                "'mic_device' parameter (see 'python -m sounddevice'), or use audio_source:=file"
            ) from None
        self.device_name = info["name"]
        self.device_rate = int(info["default_samplerate"])
        self.channels = max(1, min(2, int(info["max_input_channels"])))
        self.block_frames = max(1, int(self.block_seconds * self.device_rate))  # device frames per callback
        # One resampler for the whole stream, not one call per block: resampling each 50 ms block on its own
        # treats the block's edges as silence, which put a click into the model's audio 20 times a second
        # (peaks of 0.12 full scale, 10x those of resampling the whole signal, measured through PulseAudio at 44.1 kHz).
        # A reopened device starts a new one: the audio before the gap is not continued anyway.
        self._resampler = None
        if self.device_rate != self.sample_rate:
            import soxr

            self._resampler = soxr.ResampleStream(self.device_rate, self.sample_rate, 1, dtype="float32")
        try:
            self._stream = sounddevice.InputStream(
                device=self.device,
                samplerate=self.device_rate,
                channels=self.channels,
                dtype="float32",
                blocksize=self.block_frames,
                callback=self._on_audio,
            )
        except sounddevice.PortAudioError as error:  # listed, but it cannot be opened (gone, or busy)
            raise UserError(
                f"cannot open the audio input device '{self.device_name}' ({error}); check that it is connected "
                "and not in exclusive use, pick another with the 'mic_device' parameter, or use audio_source:=file"
            ) from None

    def _on_audio(self, indata, frames, time_info, status) -> None:  # PortAudio thread
        self._last_block = time.monotonic()
        if status.input_overflow:
            self.overflows += 1
        try:
            self._queue.put_nowait(indata.copy())
        except queue.Full:
            self.overflows += 1

    def start(self) -> None:
        """Start capturing, or resume after ``pause`` (PortAudio restarts a stopped stream). Without a stream (the
        device was lost and is not back yet) it only marks the source as capturing: ``stalled`` then says so."""
        self._capturing = True
        self._last_block = time.monotonic()
        if self._stream is not None and not self._stream.active:
            self._stream.start()

    def pause(self) -> None:
        """Stop capturing (abort: see close) and discard the blocks not read yet; the device stays open."""
        self._capturing = False
        if self._stream is not None and self._stream.active:
            self._stream.abort()
        self.drop_oldest(0.0)

    def stalled(self, timeout: float) -> bool:
        """True while capturing if the device is gone: its stream ended (PortAudio ends a stream whose device
        failed), there is none (a reopen failed), or no block arrived for ``timeout`` seconds (a working device
        delivers one every ``block_seconds``, silence included)."""
        if not self._capturing:
            return False
        if self._stream is None or not self._stream.active:
            return True
        return time.monotonic() - self._last_block > timeout

    def reopen(self) -> None:
        """Open the device again after it was lost, and resume capturing if it was: close the dead stream, rescan
        PortAudio's devices and open the same device (the default one, or ``device``) at its rate now. Raises
        UserError while it is still missing, and can simply be called again later."""
        self._close_stream()
        _refresh_device_list(self._sounddevice)
        self._open()
        if self._capturing:
            self._last_block = time.monotonic()
            self._stream.start()

    @property
    def finished(self) -> bool:
        return False

    def backlog_seconds(self) -> float:
        return self._queue.qsize() * self.block_frames / self.device_rate

    def drop_oldest(self, keep_seconds: float) -> int:
        """Discard whole device blocks, oldest first, while more than ``keep_seconds`` would remain. The callback
        only ever appends, so this (on the reading thread) never blocks it."""
        keep_blocks = math.ceil(max(0.0, keep_seconds) * self.device_rate / self.block_frames)
        frames = 0
        while self._queue.qsize() > keep_blocks:
            try:
                frames += len(self._queue.get_nowait())
            except queue.Empty:
                break
        dropped = round(frames * self.sample_rate / self.device_rate)
        self._position += dropped
        return dropped

    def read(self, timeout: float) -> AudioChunk | None:
        try:
            block = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        samples = to_mono_float32(block, self.stats)
        if self._resampler is not None:
            samples = self._resampler.resample_chunk(samples)
            if not len(samples):  # the resampler holds back its filter delay; nothing to hand out yet
                return None
        chunk = AudioChunk(samples, self._position)
        self._position += len(samples)
        return chunk

    def _close_stream(self) -> None:
        # abort, not stop: stop() waits for PortAudio's capture thread, which blocks for as long as the device
        # delivers nothing (a PulseAudio source whose writer went away, a suspended or unplugged device), and
        # close() then never returned; a capture stream holds nothing that stopping gracefully would save.
        stream, self._stream = self._stream, None
        if stream is None:
            return
        try:
            stream.abort()
            stream.close()
        except self._sounddevice.PortAudioError:  # a stream whose device failed may refuse; it is gone either way
            pass

    def close(self) -> None:
        self._capturing = False
        self._close_stream()


def resolve_source_kind(kind: str) -> str:
    """Turn 'auto' into 'mic' when a microphone exists, else 'file'; reject unknown kinds clearly."""
    if kind not in AUDIO_SOURCE_KINDS:
        raise UserError(f"unknown audio_source {kind!r}; use one of {', '.join(AUDIO_SOURCE_KINDS)}")
    if kind == "auto":
        return "mic" if has_input_device() else "file"
    return kind
