"""Sample-quality metrics over extracted features: FVD, KVD, FID, Inception Score, CLIPSIM.

Pure numpy functions (float64 throughout); the networks that produce the features are in
``dysen.eval.features``. Definitions follow ``shared/research/eval_data.md``:

* FVD / FID (§1.1, §1.5, §3.2): the Fréchet distance between Gaussians fitted to two feature sets
  (Unterthiner et al. 2018, "Towards Accurate Generative Models of Video"; Heusel et al. 2017),
  on I3D logits [N, 400] (FVD) or Inception pool3 features [N, 2048] (frame FID).
* KVD (§1.7): the unbiased polynomial-kernel MMD² of Bińkowski et al. 2018 ("Demystifying MMD GANs"),
  as computed by TATS/LVDM/Dysen on the same I3D logits.
* IS (§2.3): exp(E_x KL(p(y|x) ‖ p(y))) over C3D UCF-101 softmax outputs (Salimans et al. 2016; the
  TGAN/TGANv2 code: eps = 1e-20, float64, contiguous splits, mean ± population std).
* CLIPSIM (§3.1): the raw cosine between CLIP frame and prompt embeddings, averaged over frames, then
  over videos (Wu et al. 2021, GODIVA); not ×100 and not clamped, unlike torchmetrics' CLIPScore.

The FD, KVD and IS values depend on the sample count; compare only at equal N and report N (§1.5).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from dysen.errors import DysenError

if TYPE_CHECKING:
    import torch

    ArrayLike = np.ndarray | torch.Tensor

IS_EPS = 1e-20
"""Added to every probability before the log, as in TGAN/TGANv2's ``inception_score`` (eval_data.md §2.3)."""


class MetricError(DysenError, ValueError):
    """Features given to a metric have the wrong shape, too few samples, or non-finite values."""


def _as_float64(values: ArrayLike, ndim: int, name: str) -> np.ndarray:
    """``values`` as a finite float64 numpy array with ``ndim`` dimensions (torch tensors are detached)."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != ndim:
        raise MetricError(f"{name} must have {ndim} dimensions, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise MetricError(f"{name} contains NaN or infinite values")
    return array


def feature_stats(features: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and unbiased covariance [D, D] (÷ (N − 1), as TF-GAN, TATS and pytorch-fid) of features [N, D]."""
    x = _as_float64(features, 2, "features")  # [N, D]
    if x.shape[0] < 2:
        raise MetricError(f"a covariance needs at least 2 samples, got {x.shape[0]}")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def _psd_eigenvalues(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues and eigenvectors of a symmetric PSD matrix, with round-off below the rank tolerance set to 0.

    The tolerance is numpy ``matrix_rank``'s: max eigenvalue × D × machine epsilon. Eigenvalues under it
    (including small negatives from round-off) are numerically zero, so their square roots must not count.
    """
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    tolerance = max(values.max(initial=0.0), 0.0) * matrix.shape[0] * np.finfo(np.float64).eps
    return np.where(values > tolerance, values, 0.0), vectors


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """Tr (Σ₁Σ₂)^½ = Tr (A Σ₂ A)^½ with A = Σ₁^½ (TF-GAN's ``trace_sqrt_product``), by two symmetric eigh.

    Σ₁Σ₂ = A (A Σ₂) and A Σ₂ A = (A Σ₂) A share their nonzero eigenvalues, and A Σ₂ A is symmetric PSD, so
    its eigenvalues are real and ≥ 0: no complex round-off to drop, unlike ``scipy.linalg.sqrtm(Σ₁Σ₂)``.
    """
    values, vectors = _psd_eigenvalues(sigma1)
    root = (vectors * np.sqrt(values)) @ vectors.T  # [D, D], Σ₁^½
    inner, _ = _psd_eigenvalues(root @ sigma2 @ root)  # eigenvalues of A Σ₂ A
    return float(np.sqrt(inner).sum())


def frechet_distance(mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike) -> float:
    """FD = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^½) (eval_data.md §1.1), in float64, clamped at ≥ 0 (§1.5)."""
    m1, m2 = _as_float64(mu1, 1, "mu1"), _as_float64(mu2, 1, "mu2")  # [D], [D]
    s1, s2 = _as_float64(sigma1, 2, "sigma1"), _as_float64(sigma2, 2, "sigma2")  # [D, D], [D, D]
    dim = m1.shape[0]
    if m2.shape != (dim,) or s1.shape != (dim, dim) or s2.shape != (dim, dim):
        raise MetricError(f"shapes do not match: mu {m1.shape}, {m2.shape}; sigma {s1.shape}, {s2.shape}")
    distance = np.sum((m1 - m2) ** 2) + np.trace(s1) + np.trace(s2) - 2.0 * trace_sqrt_product(s1, s2)
    return max(float(distance), 0.0)


def _distance_from_features(real: ArrayLike, fake: ArrayLike) -> float:
    mu_real, sigma_real = feature_stats(real)
    mu_fake, sigma_fake = feature_stats(fake)
    return frechet_distance(mu_real, sigma_real, mu_fake, sigma_fake)


def fvd_from_features(real: ArrayLike, fake: ArrayLike) -> float:
    """FVD between I3D logits of real [N, 400] and generated [M, 400] clips (eval_data.md §1.1; 2048 each, §0)."""
    return _distance_from_features(real, fake)


def fid_from_features(real: ArrayLike, fake: ArrayLike) -> float:
    """Frame FID between Inception pool3 features of real [N, 2048] and generated [M, 2048] frames (§3.2)."""
    return _distance_from_features(real, fake)


def _polynomial_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² with k(a, b) = (aᵀb / d + 1)³ (sklearn ``polynomial_kernel`` defaults), eval_data.md §1.7.

    MMD² = Σ_{i≠j} k(xᵢ, xⱼ) / (m(m−1)) + Σ_{i≠j} k(yᵢ, yⱼ) / (n(n−1)) − 2 Σ_{i,j} k(xᵢ, yⱼ) / (mn).
    """
    m, n, dim = x.shape[0], y.shape[0], x.shape[1]
    k_xx = (x @ x.T / dim + 1.0) ** 3  # [m, m]
    k_yy = (y @ y.T / dim + 1.0) ** 3  # [n, n]
    k_xy = (x @ y.T / dim + 1.0) ** 3  # [m, n]
    within_x = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    within_y = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    return float(within_x + within_y - 2.0 * k_xy.mean())


def kvd_from_features(
    real: ArrayLike, fake: ArrayLike, *, num_subsets: int = 1, subset_size: int | None = None, seed: int = 0
) -> float:
    """KVD: the unbiased polynomial-kernel MMD² between I3D logits of real [N, D] and generated [M, D] clips.

    The default (one subset, all samples) is TATS/LVDM/Dysen's ``polynomial_mmd``. With ``num_subsets`` > 1
    it is StyleGAN-V's KID-style estimate: the mean over subsets of ``subset_size`` samples drawn without
    replacement from each set (seeded). Unbiased, so it can be slightly negative; it is not clamped.
    """
    x, y = _as_float64(real, 2, "real"), _as_float64(fake, 2, "fake")  # [N, D], [M, D]
    if x.shape[1] != y.shape[1]:
        raise MetricError(f"feature sizes differ: real {x.shape}, fake {y.shape}")
    size = min(x.shape[0], y.shape[0]) if subset_size is None else subset_size
    if not 2 <= size <= min(x.shape[0], y.shape[0]) or num_subsets < 1:
        raise MetricError(f"need 2 ≤ subset_size ≤ {min(x.shape[0], y.shape[0])} and num_subsets ≥ 1")
    if num_subsets == 1 and subset_size is None:
        return _polynomial_mmd2(x, y)
    rng = np.random.default_rng(seed)
    estimates = []
    for _ in range(num_subsets):
        rows_x, rows_y = rng.choice(x.shape[0], size, replace=False), rng.choice(y.shape[0], size, replace=False)
        estimates.append(_polynomial_mmd2(x[rows_x], y[rows_y]))
    return float(np.mean(estimates))


def inception_score(probs: ArrayLike, splits: int = 10) -> tuple[float, float]:
    """IS = exp(mean_i Σ_y p(y|xᵢ) [log p(y|xᵢ) − log p̄(y)]) per split (eval_data.md §2.3): (mean, std).

    ``probs`` [N, K] are softmax outputs. Splits are contiguous (TGAN's ``ys[i·N//S:(i+1)·N//S]``); shuffle
    beforehand for StyleGAN-V's protocol. std is the population std (``np.std``) over the splits.
    TGANv2's protocol is ``splits=1`` repeated over 10 fresh sample sets; StyleGAN-V's is ``splits=10``.
    """
    p = _as_float64(probs, 2, "probs")  # [N, K]
    if not 1 <= splits <= p.shape[0]:
        raise MetricError(f"splits must be between 1 and the sample count {p.shape[0]}, got {splits}")
    if (p < 0).any() or not np.allclose(p.sum(axis=1), 1.0, atol=1e-4):
        raise MetricError("probs must be probabilities: non-negative rows summing to 1 (apply softmax first)")
    n = p.shape[0]
    scores = []
    for i in range(splits):
        part = p[i * n // splits : (i + 1) * n // splits] + IS_EPS  # [n_i, K]
        kl = part * (np.log(part) - np.log(part.mean(axis=0, keepdims=True)))  # [n_i, K]
        scores.append(np.exp(kl.sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores))


def clipsim(frame_embeddings: ArrayLike, text_embeddings: ArrayLike) -> float:
    """CLIPSIM = mean_v (1/T) Σ_t cos(E_img(f_{v,t}), E_txt(p_v)) (eval_data.md §3.1): a raw cosine in [−1, 1].

    ``frame_embeddings`` [N, T, D] and ``text_embeddings`` [N, D] need not be normalised.
    """
    frames = _as_float64(frame_embeddings, 3, "frame_embeddings")  # [N, T, D]
    texts = _as_float64(text_embeddings, 2, "text_embeddings")  # [N, D]
    if texts.shape != (frames.shape[0], frames.shape[2]):
        raise MetricError(f"text_embeddings must be [N, D] = {[frames.shape[0], frames.shape[2]]}, got {texts.shape}")
    frame_norms = np.linalg.norm(frames, axis=-1, keepdims=True)  # [N, T, 1]
    text_norms = np.linalg.norm(texts, axis=-1, keepdims=True)  # [N, 1]
    if (frame_norms == 0).any() or (text_norms == 0).any():
        raise MetricError("an embedding is all zeros: its cosine similarity is undefined")
    frames, texts = frames / frame_norms, texts / text_norms
    cosines = np.einsum("ntd,nd->nt", frames, texts)  # [N, T]
    return float(cosines.mean(axis=1).mean())
