"""The realism report's burst HMM and AR(80) fit against their references, same run, interleaved.

- HMM: brainfm's vectorised Gaussian HMM (``fit_gaussian_hmm``: every series in one pass over
  time) against hmmlearn's ``GaussianHMM`` (one series per call), 2 states, exactly
  ``--iterations`` EM iterations on each series of a 52-channel beta log-envelope of synthetic
  bursting data (15,000 samples = 60 s at 250 Hz); reported per series and iteration.
  hmmlearn is given ``--hmmlearn-series`` of the series (its time scales linearly with them).
- AR(80): brainfm's closed-form ridge fit (``fit_ar_baseline``) against scikit-learn's
  ``SGDRegressor(alpha=1e-4)`` (the reference code's estimator), per channel, on the same data;
  also the in-sample one-step mean squared error of both, to show they fit equally well.

Usage::

    OMP_NUM_THREADS=1 python bench/burst_hmm.py --rounds 3
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from brainfm.downstream.generation import amplitude_envelope, fit_ar_baseline, fit_gaussian_hmm

SFREQ = 250.0


def _data(n_channels: int, n_times: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(n_times) / SFREQ
    x = rng.standard_normal((n_channels, n_times))
    for c in range(n_channels):
        gate = np.convolve(rng.random(n_times) < 0.004, np.ones(int(0.3 * SFREQ)), mode="same") > 0
        x[c] += 3 * gate * np.sin(2 * np.pi * 20 * t + c)
    return x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--hmmlearn-series", type=int, default=8)
    args = parser.parse_args()
    from hmmlearn.hmm import GaussianHMM
    from sklearn.linear_model import SGDRegressor

    x = _data(52, 15000)
    envelope = np.log(amplitude_envelope(x, SFREQ))
    envelope = (envelope - envelope.mean(1, keepdims=True)) / envelope.std(1, keepdims=True)
    z = (x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True)
    hmm_ours, hmm_ref, ar_ours, ar_ref = [], [], [], []
    for _ in range(args.rounds):
        start = time.perf_counter()
        fit_gaussian_hmm(envelope, 2, n_iter=args.iterations, tol=-np.inf)
        hmm_ours.append((time.perf_counter() - start) / (52 * args.iterations))
        start = time.perf_counter()
        for c in range(args.hmmlearn_series):
            model = GaussianHMM(2, n_iter=args.iterations, tol=-np.inf, random_state=0)
            model.fit(envelope[c][:, None])
        hmm_ref.append((time.perf_counter() - start) / (args.hmmlearn_series * args.iterations))
        start = time.perf_counter()
        ar = fit_ar_baseline(z[:4], n_lags=80)
        ar_ours.append((time.perf_counter() - start) / 4)
        start = time.perf_counter()
        errors = []
        for c in range(4):
            design = np.lib.stride_tricks.sliding_window_view(z[c, :-1], 80)[:, ::-1]
            sgd = SGDRegressor(alpha=1e-4, random_state=0).fit(design, z[c, 80:])
            errors.append(np.mean((z[c, 80:] - sgd.predict(design)) ** 2))
        ar_ref.append((time.perf_counter() - start) / 4)
    design = np.lib.stride_tricks.sliding_window_view(z[0, :-1], 80)[:, ::-1]
    ours_mse = np.mean((z[0, 80:] - design @ ar.coefficients[0] - ar.intercept[0]) ** 2)

    def row(name, ours, ref):
        ratios = np.array(ref) / np.array(ours)
        print(f"{name:<34}{np.median(ours) * 1e3:>10.2f} ms{np.median(ref) * 1e3:>12.2f} ms"
              f"{np.median(ratios):>9.1f}x  (range {ratios.min():.1f}-{ratios.max():.1f})")

    print(f"{'':<34}{'brainfm':>13}{'reference':>15}{'speed-up':>10}")
    row("HMM, per series and EM iteration", hmm_ours, hmm_ref)
    row("AR(80) fit, per channel (60 s)", ar_ours, ar_ref)
    print(f"AR(80) one-step MSE, channel 0: brainfm {ours_mse:.4f}, SGDRegressor {errors[0]:.4f}")


if __name__ == "__main__":
    main()
