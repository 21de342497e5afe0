"""Non-negative CP decomposition (NTF) of a time x subject x pair tensor by HALS, in torch.

The tensor ``X`` has shape ``(T, W, P)``; a rank-``R`` model is
``X[t, w, p] ~ sum_r A[t, r] B[w, r] C[p, r]`` with non-negative factors. Each outer iteration
updates the three factors in turn by one hierarchical-alternating-least-squares sweep over
their columns (Cichocki & Phan 2009). Every product with the data goes through the tensor
viewed as one ``(T*W, P)`` matrix, so an iteration costs two matrix products with the data:
``X @ C`` (shared by the time and subject updates) and ``(A khatri-rao B).T @ X``. The
relative error comes from the Gram matrices without forming the reconstruction.

Missing entries (a ``mask`` that is ``False`` where the data are unknown) are imputed from
the current reconstruction before every iteration (EM-style), so their values never enter the
fit. Everything runs in float32 on the tensor's device (CPU or CUDA).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from brainfm._check import check_range, ensure_int

__all__ = ["NTFResult", "factor_congruence", "normalize_factors", "ntf_hals", "random_init"]

#: Columns are kept at least this large, so that no component dies to exactly zero.
_EPS = 1e-12
#: Below this many tensor entries a fit runs on one CPU thread: its operations are too small
#: to split, and synchronising threads costs more than they save (15x slower with 2 threads
#: on a busy 2-core machine for a 1153 x 4 x 28 tensor).
_SINGLE_THREAD_ENTRIES = 2**22


@contextmanager
def _cpu_threads(n_entries: int, device: torch.device) -> Iterator[None]:
    if device.type != "cpu" or n_entries >= _SINGLE_THREAD_ENTRIES or torch.get_num_threads() == 1:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass
class NTFResult:
    """A fitted non-negative CP model.

    Attributes
    ----------
    factors : list of torch.Tensor
        ``[A (T, R), B (W, R), C (P, R)]``: time, subject and pair loadings, on CPU.
    errors : list of float
        Relative reconstruction error after each iteration, as estimated from Gram matrices
        (what the stopping rule watches; float32 rounding biases it by up to ~1e-3 relative).
    final_error : float | None
        The relative error ``||M * (X - X_hat)|| / ||M * X||`` of the returned factors,
        computed from the data at the end.
    converged : bool
        Whether the error changed by less than ``tol`` before ``n_iter_max`` iterations.
    seed : int | None
        The seed of the random initialisation (``None`` for a given one).
    """

    factors: list[torch.Tensor]
    errors: list[float] = field(default_factory=list)
    final_error: float | None = None
    converged: bool = False
    seed: int | None = None

    @property
    def rank(self) -> int:
        """The number of components."""
        return int(self.factors[0].shape[1])

    @property
    def error(self) -> float:
        """The relative reconstruction error of the returned factors."""
        if self.final_error is not None:
            return self.final_error
        return self.errors[-1] if self.errors else float("nan")

    @property
    def n_iter(self) -> int:
        """The number of iterations run."""
        return len(self.errors)


def random_init(shape: Sequence[int], rank: int, seed: int, norm: float | None = None) -> list[torch.Tensor]:
    """Uniform random non-negative factors, the same on every device for a given seed.

    Parameters
    ----------
    shape : sequence of int
        ``(T, W, P)``.
    rank : int
        Number of components.
    seed : int
        Seed of a private generator (the global RNG is not touched).
    norm : float | None
        When given, the factors are scaled so that the model's Frobenius norm is about
        ``norm`` (the data's), which saves the first iterations a rescaling.

    Returns
    -------
    factors : list of torch.Tensor
        Three float32 CPU tensors ``(T, R)``, ``(W, R)``, ``(P, R)``.
    """
    generator = torch.Generator().manual_seed(int(seed))
    factors = [torch.rand(n, rank, generator=generator, dtype=torch.float32) for n in shape]
    if norm is not None and norm > 0:
        gram = (factors[0].T @ factors[0]) * (factors[1].T @ factors[1]) * (factors[2].T @ factors[2])
        model_norm = float(gram.sum().clamp_min(1e-30).sqrt())
        scale = (norm / model_norm) ** (1 / 3)
        factors = [f * scale for f in factors]
    return factors


def _sum_of_squares(x: torch.Tensor) -> float:
    """Sum of squares accumulated in float64, without a float64 copy of ``x``.

    A float32 reduction over millions of entries is off by ~1e-3 relative (enough to spoil an
    error of a few percent computed from Gram matrices). On the CPU NumPy's ``einsum`` with a
    float64 accumulator does it in one pass (torch's many small reductions each start a
    thread team, which on a busy machine costs milliseconds apiece); on a GPU torch's
    ``vector_norm(dtype=float64)``.
    """
    if x.device.type == "cpu":
        flat = x.reshape(-1).numpy()
        return float(np.einsum("i,i->", flat, flat, dtype=np.float64))
    return float(torch.linalg.vector_norm(x, dtype=torch.float64)) ** 2


def _norm(x: torch.Tensor) -> float:
    """Frobenius norm, accurate for tensors of any size (:func:`_sum_of_squares`)."""
    return _sum_of_squares(x) ** 0.5


def _exact_error(x: torch.Tensor, observed: torch.Tensor | None, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> float:
    """``||M * (X - X_hat)|| / ||M * X||`` from the data, in blocks of time points (no full-size model)."""
    n_t, n_w, n_p = x.shape
    step = max(1, 2**22 // max(n_w * n_p, 1))
    residual = 0.0
    total = _sum_of_squares(x) if observed is None else 0.0
    for t0 in range(0, n_t, step):
        block = x[t0 : t0 + step]  # (t, W, P)
        model = ((a[t0 : t0 + step].unsqueeze(1) * b.unsqueeze(0)).reshape(-1, a.shape[1]) @ c.T).reshape(block.shape)
        diff = block - model
        if observed is not None:
            keep = observed if observed.shape[0] == 1 else observed[t0 : t0 + step]
            diff = diff * keep
            total += _sum_of_squares(block * keep)
        residual += _sum_of_squares(diff)
    return (residual / total) ** 0.5 if total > 0 else 0.0


def _hals_update(factor: torch.Tensor, mttkrp: torch.Tensor, gram: torch.Tensor, n_sweeps: int) -> None:
    """HALS sweeps over the columns of ``factor`` (in place).

    Minimises ``||X_(n) - factor @ K.T||`` column by column, where ``mttkrp = X_(n) @ K`` and
    ``gram = K.T @ K``. Repeated sweeps cost only ``(I, R)`` work each and reuse the expensive
    ``mttkrp``; every sweep lowers the objective.
    """
    diagonal = torch.diagonal(gram).tolist()
    for _ in range(n_sweeps):
        for r, denominator in enumerate(diagonal):
            if denominator <= 0:
                continue
            # (I,) += ((I,) - (I, R) @ (R,)) / scalar
            column = factor[:, r] + (mttkrp[:, r] - factor @ gram[:, r]) / denominator
            factor[:, r] = column.clamp_(min=_EPS)


def ntf_hals(
    tensor: torch.Tensor | np.ndarray,
    rank: int,
    *,
    mask: torch.Tensor | np.ndarray | None = None,
    init: Sequence[torch.Tensor | np.ndarray] | None = None,
    seed: int = 0,
    n_iter_max: int = 500,
    tol: float = 1e-6,
    n_inner: int = 5,
    device: str | torch.device | None = None,
) -> NTFResult:
    """Fit a non-negative CP model to a 3-way tensor by HALS.

    Parameters
    ----------
    tensor : torch.Tensor | numpy.ndarray
        Non-negative data ``(T, W, P)`` (time, subject, pair). Converted to float32; a float32
        CPU tensor or array is used without a copy when ``device`` is the CPU.
    rank : int
        Number of components ``R``.
    mask : torch.Tensor | numpy.ndarray | None
        ``True`` where an entry is observed; shape ``(T, W, P)`` or ``(W, P)`` (the same for
        every time point, as for a node missing in a subject). Unobserved entries are imputed
        from the model at every iteration, so their values do not matter.
    init : sequence of array | None
        Initial factors ``[A, B, C]``; by default :func:`random_init` with ``seed`` scaled to
        the data's norm.
    seed : int
        Seed of the random initialisation.
    n_iter_max : int
        Maximum number of outer iterations.
    tol : float
        Stop when the relative error changes by less than ``tol`` between iterations
        (the stopping rule of tensorly's ``non_negative_parafac_hals``).
    n_inner : int
        HALS sweeps over a factor's columns per update (tensorly uses 5): they reuse one
        product with the data, so more sweeps make each costly iteration count for more.
    device : str | torch.device | None
        Where to compute (``"cpu"``, ``"cuda"``); default: the tensor's device.

    Returns
    -------
    result : NTFResult
        Factors (on CPU), the error after every iteration and whether it converged.
    """
    rank = ensure_int("rank", rank)
    check_range("rank", rank, low=1)
    n_iter_max = ensure_int("n_iter_max", n_iter_max)
    check_range("n_iter_max", n_iter_max, low=1)
    n_inner = ensure_int("n_inner", n_inner)
    check_range("n_inner", n_inner, low=1)
    x = torch.as_tensor(tensor)
    if x.ndim != 3:
        raise ValueError(f"ntf_hals needs a 3-way tensor (T, W, P), got shape {tuple(x.shape)}.")
    x = x.to(device=device if device is not None else x.device, dtype=torch.float32)
    if not bool(torch.isfinite(x).all()) or float(x.min()) < 0:
        raise ValueError("ntf_hals needs a finite, non-negative tensor.")
    n_t, n_w, n_p = x.shape
    observed = None
    if mask is not None:
        observed = torch.as_tensor(mask, dtype=torch.bool, device=x.device)
        if observed.shape == (n_w, n_p):
            observed = observed.unsqueeze(0)  # (1, W, P), broadcast over time
        if observed.shape not in ((1, n_w, n_p), (n_t, n_w, n_p)):
            raise ValueError(f"mask has shape {tuple(observed.shape)}; expected {(n_w, n_p)} or {(n_t, n_w, n_p)}.")
        if bool(observed.all()):
            observed = None
    data = x if observed is None else torch.where(observed, x, torch.zeros((), device=x.device))
    norm_x = _norm(data)
    if init is None:
        factors = random_init((n_t, n_w, n_p), rank, seed, norm=norm_x)
    else:
        factors = [torch.as_tensor(np.asarray(f) if not isinstance(f, torch.Tensor) else f, dtype=torch.float32).clone()
                   for f in init]
        expected = [(n_t, rank), (n_w, rank), (n_p, rank)]
        if [tuple(f.shape) for f in factors] != expected:
            raise ValueError(f"init has shapes {[tuple(f.shape) for f in factors]}; expected {expected}.")
        seed = None  # type: ignore[assignment]
    a, b, c = (f.to(x.device).clamp_(min=_EPS) for f in factors)
    result = NTFResult(factors=[], seed=seed)
    with _cpu_threads(x.numel(), x.device):
        _fit(x, observed, data, norm_x, a, b, c, result, n_iter_max=n_iter_max, tol=tol, n_inner=n_inner)
        result.final_error = _exact_error(x, observed, a, b, c)
    result.factors = [f.cpu() for f in (a, b, c)]
    return result


def _fit(
    x: torch.Tensor, observed: torch.Tensor | None, data: torch.Tensor, norm_x: float,
    a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, result: NTFResult, *, n_iter_max: int, tol: float, n_inner: int,
) -> None:
    """The HALS iterations of :func:`ntf_hals` (factors updated in place, errors appended)."""
    n_t, n_w, n_p = x.shape
    rank = a.shape[1]
    previous = None
    for _ in range(n_iter_max):
        if observed is not None:
            # EM step: unobserved entries take the model's current values.
            model = (a.unsqueeze(1) * b.unsqueeze(0)).reshape(n_t * n_w, rank) @ c.T  # (T*W, P)
            data = torch.where(observed, x, model.reshape(n_t, n_w, n_p))
            norm_x = _norm(data)
        matrix = data.reshape(n_t * n_w, n_p)  # (T*W, P), a view
        gram_c = c.T @ c
        xc = (matrix @ c).reshape(n_t, n_w, rank)  # (T, W, R): X_(t) and X_(w) times C, shared
        _hals_update(a, torch.einsum("twr,wr->tr", xc, b), (b.T @ b) * gram_c, n_inner)
        _hals_update(b, torch.einsum("twr,tr->wr", xc, a), (a.T @ a) * gram_c, n_inner)
        khatri_rao = (a.unsqueeze(1) * b.unsqueeze(0)).reshape(n_t * n_w, rank)  # (T*W, R)
        # (R, T*W) @ (T*W, P): both operands contiguous; matrix.T @ khatri_rao was 10x slower
        mttkrp_c = (khatri_rao.T @ matrix).T.contiguous()  # (P, R)
        gram_ab = (a.T @ a) * (b.T @ b)
        _hals_update(c, mttkrp_c, gram_ab, n_inner)
        # ||X - X_hat||^2 = ||X||^2 - 2 <X, X_hat> + ||X_hat||^2, all from R x R products
        inner = float((mttkrp_c.double() * c.double()).sum())
        model_sq = float((gram_ab.double() * (c.T @ c).double()).sum())
        residual_sq = max(norm_x**2 - 2 * inner + model_sq, 0.0)
        error = residual_sq**0.5 / norm_x if norm_x > 0 else 0.0
        result.errors.append(error)
        if previous is not None and abs(previous - error) < tol:
            result.converged = True
            break
        previous = error


def normalize_factors(factors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Scale time and subject loadings to unit maximum, the scale absorbed into the pair loadings.

    Components are then ordered by the norm of their pair loading (largest first).

    Parameters
    ----------
    factors : sequence of torch.Tensor
        ``[A (T, R), B (W, R), C (P, R)]``.

    Returns
    -------
    factors : list of torch.Tensor
        New tensors; the model they describe is unchanged.
    """
    a, b, c = (f.clone() for f in factors)
    scale_a = a.amax(dim=0).clamp_min(1e-30)
    scale_b = b.amax(dim=0).clamp_min(1e-30)
    a /= scale_a
    b /= scale_b
    c *= scale_a * scale_b
    order = torch.argsort(c.norm(dim=0), descending=True)
    return [a[:, order], b[:, order], c[:, order]]


def factor_congruence(first: Sequence[torch.Tensor], second: Sequence[torch.Tensor]) -> tuple[float, np.ndarray]:
    """Mean factor congruence of two CP models after best matching of their components.

    The congruence of two components is the product over modes of the cosine similarity of
    their loadings (Tucker's congruence, as used for the stability of CP models by Williams
    et al. 2018); components are matched by the Hungarian algorithm.

    Parameters
    ----------
    first, second : sequence of torch.Tensor
        Factors ``[A, B, C]`` of two models of the same rank.

    Returns
    -------
    congruence : float
        Mean congruence of the matched components, in [0, 1] for non-negative factors.
    permutation : numpy.ndarray
        ``permutation[r]``: the component of ``second`` matched to component ``r`` of ``first``.
    """
    from scipy.optimize import linear_sum_assignment

    score = None
    for u, v in zip(first, second, strict=True):
        u = torch.nn.functional.normalize(u.double(), dim=0)
        v = torch.nn.functional.normalize(v.double(), dim=0)
        cosine = u.T @ v  # (R, R)
        score = cosine if score is None else score * cosine
    assert score is not None
    matrix = score.numpy()
    rows, cols = linear_sum_assignment(-matrix)
    permutation = np.empty(len(rows), dtype=np.int64)
    permutation[rows] = cols
    return float(matrix[rows, cols].mean()), permutation
