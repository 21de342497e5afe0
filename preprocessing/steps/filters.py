"""Channel-wise steps: resampling, notch (line noise and harmonics) and band-pass filters.

These wrap MNE's array filters (the same code ``Raw.filter``/``Raw.resample`` run), plus a
second-order IIR notch applied causally or forward-backward for the BaRISTA recipe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, ClassVar, Literal

import numpy as np
from jsonargparse.typing import NonNegativeFloat, PositiveFloat, PositiveInt

from brainfm._check import check_option
from brainfm.preprocessing.steps.base import ChannelwiseStep, SignalState

__all__ = ["Bandpass", "Notch", "Resample", "detect_line_freq"]


@dataclass
class Resample(ChannelwiseStep):
    """Resample every channel to a new rate.

    Parameters
    ----------
    sfreq : float | dict of str to float
        Target rate in Hz, or one per modality (``{"eeg": 256, "meg": 256, "ieeg": 512}``;
        a recording's modality is ``ieeg`` with any iEEG channel, else ``meg`` with any MEG
        channel, else ``eeg``).
    method : "polyphase" | "fft"
        ``polyphase`` (default: a Kaiser-windowed anti-aliasing FIR through MNE and
        ``scipy.signal.resample_poly``) or MNE's ``fft``. Polyphase was the faster of the two
        for every rate pair measured (160-5000 Hz to 250-512 Hz, up to 11x; see
        docs/benchmarks.md).
    only_down : bool
        Never raise the rate (recordings below the target keep theirs).
    """

    name: ClassVar[str] = "resample"
    sfreq: PositiveFloat | dict[Literal["eeg", "meg", "ieeg"], PositiveFloat] = 256.0
    method: Literal["polyphase", "fft"] = "polyphase"
    only_down: bool = False

    def __post_init__(self) -> None:
        check_option("method", self.method, ("polyphase", "fft"))
        self._target: float | None = None

    def prepare(self, state: SignalState) -> dict[str, Any]:
        target = self.sfreq
        if isinstance(target, dict):
            if state.modality not in target:
                return {"skip": True, "reason": f"no target rate for modality {state.modality!r}"}
            target = target[state.modality]
        target = float(target)
        if target <= 0:
            raise ValueError(f"resample: sfreq must be positive, got {target!r}.")
        if np.isclose(target, state.sfreq, rtol=0, atol=1e-9):
            return {"skip": True, "reason": f"already at {target:g} Hz"}
        if self.only_down and target > state.sfreq:
            return {"skip": True, "reason": f"{state.sfreq:g} Hz is below the target and only_down is set"}
        self._target = target
        return {"from_sfreq": state.sfreq, "to_sfreq": target, "method": self.method}

    def output_sfreq(self, sfreq: float) -> float:
        return self._target if self._target is not None else sfreq

    def min_samples(self, sfreq: float) -> tuple[int, str]:
        """The span of the anti-aliasing filter, in input samples.

        Both methods go through MNE, whose polyphase resampler designs a low-pass FIR of
        ``20 * max(up, down) + 1`` taps at ``up * sfreq`` (SciPy's ``resample_poly`` rule): it
        spans ``20 * max(1, sfreq / target)`` input samples, e.g. 21 from 160 to 256 Hz or 391
        from 5000 Hz (0.08-0.13 s). Shorter input is all filter edge; a single sample crashes
        SciPy.
        """
        if self._target is None:
            return 2, ""
        ratio = Fraction(self._target / sfreq).limit_denominator(10**6)
        up, down = ratio.numerator, ratio.denominator
        need = math.ceil((20 * max(up, down) + 1) / up)
        return need, f"resampling from {sfreq:g} to {self._target:g} Hz (the span of its anti-aliasing filter)"
    def output_segments(self, segments: list[tuple[int, int]], sfreq: float) -> list[tuple[int, int]]:
        return [(a_out, b_out) for _, _, a_out, b_out in self._spans(segments, sfreq) if b_out > a_out]

    def _spans(self, segments: list[tuple[int, int]], sfreq: float) -> list[tuple[int, int, int, int]]:
        """``(start, stop, out_start, out_stop)`` per segment: each edge moves to ``round(edge * ratio)``.

        Rounding the edges, not the lengths, keeps the output as long as resampling the whole
        signal at once (``round(n * ratio)``, MNE's rule) and every later edge in place.
        """
        assert self._target is not None, "prepare() must run first"
        ratio = float(self._target) / sfreq
        return [(a, b, int(round(ratio * a)), int(round(ratio * b))) for a, b in segments]

    def apply_block(self, block: np.ndarray, sfreq: float, types: np.ndarray, segments: list[tuple[int, int]]) -> np.ndarray:
        import mne

        assert self._target is not None, "prepare() must run first"
        n_times = block.shape[1]
        spans = self._spans(segments or [(0, n_times)], sfreq)
        if len(spans) == 1 and spans[0][:2] == (0, n_times):  # one segment: MNE's own call, no copy
            with self.capture_warnings():
                return mne.filter.resample(block, up=self._target, down=sfreq, method=self.method, verbose="warning")
        output = np.empty((block.shape[0], spans[-1][3]), dtype=block.dtype)
        for a, b, a_out, b_out in spans:
            if b_out <= a_out:
                continue  # a stretch shorter than half an output sample
            if b_out - a_out == b - a:  # a stretch of a few samples keeps its length: nothing to filter
                output[:, a_out:b_out] = block[:, a:b]
                continue
            with self.capture_warnings():  # each segment resampled to exactly its share
                output[:, a_out:b_out] = mne.filter.resample(
                    block[:, a:b], up=b_out - a_out, down=b - a, method=self.method, verbose="warning",
                )
        return output


def detect_line_freq(data: np.ndarray, sfreq: float, max_channels: int = 8, max_seconds: float = 120.0) -> float | None:
    """Detect 50 or 60 Hz power-line noise from the spectrum.

    A candidate wins when the power at its frequency is at least 5 times the median power
    of the surrounding ±5 Hz (±1 Hz excluded), averaged over a few channels.

    Parameters
    ----------
    data : numpy.ndarray, shape (n_channels, n_times)
        Signal.
    sfreq : float
        Sampling rate in Hz.
    max_channels : int
        Channels looked at (evenly spread).
    max_seconds : float
        Length of the excerpt looked at, from the middle of the recording.

    Returns
    -------
    line_freq : float | None
        50.0, 60.0 or None when neither stands out (or the rate is too low to tell).
    """
    from scipy.signal import welch

    if sfreq < 2 * 66 or data.shape[1] < sfreq:
        return None
    rows = np.linspace(0, data.shape[0] - 1, min(max_channels, data.shape[0])).astype(int)
    n = min(data.shape[1], int(max_seconds * sfreq))
    start = (data.shape[1] - n) // 2
    excerpt = np.asarray(data[rows, start : start + n], dtype=np.float64)
    freqs, psd = welch(excerpt, fs=sfreq, nperseg=int(min(n, 4 * sfreq)), axis=-1)
    psd = psd / np.maximum(psd.sum(axis=-1, keepdims=True), np.finfo(float).tiny)
    psd = psd.mean(axis=0)
    best, best_ratio = None, 5.0
    for candidate in (50.0, 60.0):
        peak = psd[np.abs(freqs - candidate) <= 0.5]
        around = psd[(np.abs(freqs - candidate) <= 5) & (np.abs(freqs - candidate) > 1)]
        if not len(peak) or not len(around):
            continue
        ratio = float(peak.max() / max(np.median(around), np.finfo(float).tiny))
        if ratio > best_ratio:
            best, best_ratio = candidate, ratio
    return best


@dataclass
class Notch(ChannelwiseStep):
    """Remove power-line noise (and harmonics) or other narrow-band lines.

    Parameters
    ----------
    freqs : "line" | list of float
        ``"line"`` uses the recording's power-line frequency (from the file, BIDS or an
        override; detected from the spectrum when unknown and ``detect`` is set), plus its
        harmonics below Nyquist when ``harmonics``. A list names exact frequencies.
    harmonics : bool
        Add harmonics of the line frequency (only with ``freqs="line"``).
    max_freq : float | None
        Highest frequency notched (e.g. 360 Hz for BaRISTA); Nyquist bounds it anyway.
    method : "fir" | "iir"
        ``fir``: MNE's notch FIR. ``iir``: a cascade of second-order IIR notches
        (``scipy.signal.iirnotch``) with quality factor ``quality``.
    phase : "zero" | "causal"
        ``zero`` (no delay; forward-backward for IIR) or ``causal`` (one forward pass, IIR
        only: the BaRISTA reference).
    notch_widths : float | None
        Stop-band width in Hz for FIR (MNE's default, ``freq / 200``, when None).
    quality : float
        Quality factor of each IIR notch.
    detect : bool
        Detect 50/60 Hz from the spectrum when the line frequency is unknown.
    """

    name: ClassVar[str] = "notch"
    freqs: Literal["line"] | list[PositiveFloat] = "line"
    harmonics: bool = True
    max_freq: PositiveFloat | None = None
    method: Literal["fir", "iir"] = "fir"
    phase: Literal["zero", "causal"] = "zero"
    notch_widths: PositiveFloat | None = None
    quality: PositiveFloat = 30.0
    detect: bool = True

    def __post_init__(self) -> None:
        check_option("method", self.method, ("fir", "iir"))
        check_option("phase", self.phase, ("zero", "causal"))
        if self.method == "fir" and self.phase == "causal":
            raise ValueError("notch: phase='causal' needs method='iir'.")
        if self.freqs != "line" and not isinstance(self.freqs, (list, tuple)):
            raise ValueError(f"notch: freqs must be 'line' or a list of frequencies, got {self.freqs!r}.")
        self._freqs: np.ndarray = np.zeros(0)

    def inspect_input(self, state: SignalState) -> dict[str, Any]:
        if self.freqs == "line" and state.line_freq is None and self.detect:
            line = detect_line_freq(state.data, state.sfreq)
            if line is not None:
                state.line_freq = line
            return {"line_freq_detected": line}
        return {}

    def prepare(self, state: SignalState) -> dict[str, Any]:
        nyquist = state.sfreq / 2.0
        if self.freqs == "line":
            line = state.line_freq
            if line is None:
                state.warnings.append("notch skipped: the power-line frequency is unknown and was not detected")
                return {"skip": True, "reason": "power-line frequency unknown"}
            freqs = np.arange(1, int(nyquist // line) + 1) * line if self.harmonics else np.array([line])
        else:
            freqs = np.asarray(self.freqs, dtype=float)
        limit = nyquist - 1.0 if self.max_freq is None else min(self.max_freq, nyquist - 1.0)
        # the FIR notch needs room for its transition band below Nyquist
        freqs = freqs[freqs <= limit]
        if not len(freqs):
            return {"skip": True, "reason": f"no notch frequency below {limit:g} Hz"}
        self._freqs = freqs
        return {"freqs": freqs.tolist(), "line_freq": state.line_freq}

    def min_samples(self, sfreq: float) -> tuple[int, str]:
        """One period of the lowest notch frequency: less cannot tell the line from a drift."""
        if not len(self._freqs):
            return 2, ""
        need = max(2, math.ceil(sfreq / float(np.min(self._freqs))) + 1)
        return need, f"the notch at {float(np.min(self._freqs)):g} Hz (one period of it)"

    def apply_block(self, block: np.ndarray, sfreq: float, types: np.ndarray, segments: list[tuple[int, int]]) -> np.ndarray:
        for start, stop in segments:
            part = block[:, start:stop]
            if self.method == "fir":
                import mne

                with self.capture_warnings():  # e.g. a segment shorter than the filter
                    block[:, start:stop] = mne.filter.notch_filter(
                        part, sfreq, self._freqs, notch_widths=self.notch_widths, method="fir",
                        phase="zero", copy=False, verbose="warning",
                    )
            else:
                with self.capture_warnings():
                    block[:, start:stop] = _iir_notch(part, sfreq, self._freqs, self.quality, self.phase)
        return block


def _iir_notch(x: np.ndarray, sfreq: float, freqs: np.ndarray, quality: float, phase: str) -> np.ndarray:
    from scipy.signal import iirnotch, sosfilt, sosfiltfilt, tf2sos

    sos = np.concatenate([tf2sos(*iirnotch(f, quality, fs=sfreq)) for f in freqs])
    if phase == "causal":
        return sosfilt(sos, x, axis=-1)
    padlen = min(x.shape[-1] - 1, 3 * (2 * len(sos) + 1))
    return sosfiltfilt(sos, x, axis=-1, padlen=padlen)


@dataclass
class Bandpass(ChannelwiseStep):
    """High-, low- or band-pass filter every channel (MNE ``filter_data``).

    Parameters
    ----------
    l_freq : float | None
        High-pass edge in Hz (None: no high-pass).
    h_freq : float | None
        Low-pass edge in Hz (None: no low-pass). An edge at or above Nyquist is dropped,
        with a warning in the provenance.
    method : "fir" | "iir"
        MNE's FIR (``firwin``, zero phase) or a Butterworth IIR of order ``order``.
    order : int
        IIR filter order.
    phase : "zero" | "forward"
        IIR only: forward-backward (``zero``, MNE's default) or one forward pass.
    """

    name: ClassVar[str] = "bandpass"
    l_freq: NonNegativeFloat | None = 0.1
    h_freq: PositiveFloat | None = None
    method: Literal["fir", "iir"] = "fir"
    order: PositiveInt = 4
    phase: Literal["zero", "forward"] = "zero"

    def __post_init__(self) -> None:
        check_option("method", self.method, ("fir", "iir"))
        check_option("phase", self.phase, ("zero", "forward"))
        if self.method == "fir" and self.phase != "zero":
            raise ValueError("bandpass: phase='forward' needs method='iir'.")
        if self.l_freq is not None and self.h_freq is not None and self.l_freq >= self.h_freq:
            raise ValueError(f"bandpass: l_freq ({self.l_freq}) must be below h_freq ({self.h_freq}).")
        self._edges: tuple[float | None, float | None] = (self.l_freq, self.h_freq)

    def prepare(self, state: SignalState) -> dict[str, Any]:
        l_freq, h_freq = self.l_freq, self.h_freq
        nyquist = state.sfreq / 2.0
        if h_freq is not None and h_freq >= nyquist:
            state.warnings.append(f"bandpass: h_freq {h_freq:g} Hz is not below Nyquist ({nyquist:g} Hz); low-pass skipped")
            h_freq = None
        if l_freq is not None and l_freq <= 0:
            l_freq = None
        if l_freq is None and h_freq is None:
            return {"skip": True, "reason": "no band edge left below Nyquist"}
        self._edges = (l_freq, h_freq)
        return {"l_freq": l_freq, "h_freq": h_freq}

    def min_samples(self, sfreq: float) -> tuple[int, str]:
        """One period of the low-pass edge. A high-pass edge asks for nothing more: on a
        recording shorter than its period it removes all that is slower than the recording,
        which is its job (MNE warns that its filter is longer than the signal)."""
        h_freq = self._edges[1]
        if h_freq is None:
            return 2, ""
        need = max(2, math.ceil(sfreq / h_freq) + 1)
        return need, f"the low-pass at {h_freq:g} Hz (one period of it)"

    def apply_block(self, block: np.ndarray, sfreq: float, types: np.ndarray, segments: list[tuple[int, int]]) -> np.ndarray:
        import mne

        l_freq, h_freq = self._edges
        iir_params = dict(order=self.order, ftype="butter", output="sos") if self.method == "iir" else None
        for start, stop in segments:
            with self.capture_warnings():  # e.g. a segment shorter than the filter
                block[:, start:stop] = mne.filter.filter_data(
                    block[:, start:stop], sfreq, l_freq, h_freq, method=self.method,
                    iir_params=iir_params, phase=self.phase, copy=False, verbose="warning",
                )
        return block
