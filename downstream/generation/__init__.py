"""Generated data: the realism report and the autoregressive baseline generator (MEG-GPT spec §6-7).

``realism_report(real, generated, sfreq)`` compares generated recordings with real ones
(Welch PSD error per band, beta-burst statistics from a 2-state envelope HMM, recording
fingerprinting); ``fit_ar_baseline``/``generate_ar`` give the 80-lag per-channel AR baseline
the report sets beside a model. Nothing here needs a trained model: ``brainfm generate``
calls these on its output.
"""

from brainfm.downstream.generation.ar_baseline import ARBaseline, fit_ar_baseline, generate_ar
from brainfm.downstream.generation.bursts import (
    BurstStats,
    amplitude_envelope,
    burst_statistics,
    state_runs,
)
from brainfm.downstream.generation.fingerprint import (
    FINGERPRINT_FEATURES,
    fingerprint_accuracy,
    fingerprint_features,
    tde_covariance,
)
from brainfm.downstream.generation.hmm import GaussianHMMFit, fit_gaussian_hmm, viterbi
from brainfm.downstream.generation.realism import load_signals, realism_report, write_realism_report
from brainfm.downstream.generation.spectra import BANDS, band_power, psd_relative_error, welch_psd

__all__ = [
    "ARBaseline",
    "BANDS",
    "BurstStats",
    "FINGERPRINT_FEATURES",
    "GaussianHMMFit",
    "amplitude_envelope",
    "band_power",
    "burst_statistics",
    "fingerprint_accuracy",
    "fingerprint_features",
    "fit_ar_baseline",
    "fit_gaussian_hmm",
    "generate_ar",
    "load_signals",
    "psd_relative_error",
    "realism_report",
    "state_runs",
    "tde_covariance",
    "viterbi",
    "welch_psd",
    "write_realism_report",
]
