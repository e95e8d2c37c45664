"""A first convolution that whitens image patches, set from the training images (airbench's).

The 2x2 patches' (uncentred) covariance over the training images gives eigenvectors v_k and
eigenvalues l_k; the layer's 2 x 12 filters are v_k / sqrt(l_k + eps) and their negatives, so that
after it every patch direction has unit variance, the sign kept by the GELU that follows.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

EPS = 5e-4
FREEZE_BIAS_AFTER = 3  # epochs the whitening layer's bias trains before it is frozen (airbench94)


def patches(images: np.ndarray, size: int = 2) -> np.ndarray:
    """Every ``size`` x ``size`` patch of (N, C, H, W) images as rows (C * size * size), in a
    convolution filter's layout (C, kh, kw)."""
    windows = np.lib.stride_tricks.sliding_window_view(images, (size, size), axis=(2, 3))  # (N, C, H', W', s, s)
    return windows.transpose(0, 2, 3, 1, 4, 5).reshape(-1, images.shape[1] * size * size)


def whitening_filters(images: np.ndarray, size: int = 2, eps: float = EPS) -> np.ndarray:
    """(2 * C * size**2, C, size, size) filters: the scaled eigenvectors of the patch covariance,
    largest eigenvalue first, then their negatives."""
    rows = patches(np.asarray(images, dtype=np.float64), size)
    covariance = rows.T @ rows / len(rows)
    values, vectors = np.linalg.eigh(covariance)  # ascending
    values, vectors = values[::-1], vectors[:, ::-1]
    filters = (vectors.T / np.sqrt(values + eps)[:, None]).reshape(-1, images.shape[1], size, size)
    return np.concatenate([filters, -filters])


def prepare(model, images: np.ndarray, eps: float = EPS) -> Callable[[int, object], None]:
    """Set ``model[0]``'s weights to whitening filters of ``images`` (normalised, as the model sees
    them); the hook that freezes its bias once ``FREEZE_BIAS_AFTER`` epochs are done (torch)."""
    first = model[0]
    weights = whitening_filters(images, first.weight.shape[-1], eps)
    from twinnet import numpy_nn

    if isinstance(first.weight, numpy_nn.Parameter):
        first.weight.data = weights.astype(first.weight.data.dtype)
    else:  # torch
        import torch

        with torch.no_grad():
            first.weight.copy_(torch.from_numpy(weights).to(first.weight.dtype))

    def freeze_bias(epoch: int, learner) -> None:
        # torch's weight is frozen from the start (architectures.py), its bias here; the NumPy engine trains
        # every layer (image.py), so its twin is left as it is
        if isinstance(first.bias, numpy_nn.Parameter):
            return
        if epoch >= FREEZE_BIAS_AFTER and getattr(first.bias, "requires_grad", False):
            first.bias.requires_grad_(False)
            learner.trainable_changed()

    return freeze_bias
