"""CS231n's ``im2col_cython`` in NumPy: the compiled helpers of the course's fast layers (``conv_backward_strides``
calls ``col2im_6d_cython``; the im2col convolution and pooling, ``im2col_cython`` and ``col2im_cython``), given
where the course's Cython module was not built, so that a student's network built on the fast layers is graded on
the student's code. The same arrays as the course's: columns ``(C * fh * fw, HH * WW * N)``, each row a channel and
field position (c, i, j) in that order, each column an output position and image (y, x, n); the 6-d columns
``(C, HH, WW, N, out_h, out_w)``."""

from __future__ import annotations

import numpy as np


def _windows(field_height: int, field_width: int, out_h: int, out_w: int, stride: int):
    """The padded input's rows (fh, 1, out_h, 1) and columns (1, fw, 1, out_w) each field position reads."""
    rows = stride * np.arange(out_h)[None, None, :, None] + np.arange(field_height)[:, None, None, None]
    cols = stride * np.arange(out_w)[None, None, None, :] + np.arange(field_width)[None, :, None, None]
    return rows, cols


def _out(size: int, field: int, padding: int, stride: int) -> int:
    return (size + 2 * padding - field) // stride + 1


def _cropped(x_padded: np.ndarray, padding: int) -> np.ndarray:
    return x_padded[:, :, padding:-padding, padding:-padding] if padding > 0 else x_padded


def im2col_cython(x, field_height, field_width, padding, stride):
    n, c, h, w = x.shape
    out_h, out_w = _out(h, field_height, padding, stride), _out(w, field_width, padding, stride)
    x_padded = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    rows, cols = _windows(field_height, field_width, out_h, out_w, stride)
    patches = x_padded[:, :, rows, cols]  # (N, C, fh, fw, out_h, out_w)
    return patches.transpose(1, 2, 3, 4, 5, 0).reshape(c * field_height * field_width, -1)


def col2im_cython(cols, N, C, H, W, field_height, field_width, padding, stride):
    out_h, out_w = _out(H, field_height, padding, stride), _out(W, field_width, padding, stride)
    x_padded = np.zeros((N, C, H + 2 * padding, W + 2 * padding), dtype=cols.dtype)
    rows, columns = _windows(field_height, field_width, out_h, out_w, stride)
    values = cols.reshape(C, field_height, field_width, out_h, out_w, N).transpose(5, 0, 1, 2, 3, 4)
    np.add.at(x_padded, (slice(None), slice(None), rows, columns), values)
    return _cropped(x_padded, padding)


def col2im_6d_cython(cols, N, C, H, W, HH, WW, pad, stride):
    out_h, out_w = _out(H, HH, pad, stride), _out(W, WW, pad, stride)
    x_padded = np.zeros((N, C, H + 2 * pad, W + 2 * pad), dtype=cols.dtype)
    rows, columns = _windows(HH, WW, out_h, out_w, stride)
    np.add.at(x_padded, (slice(None), slice(None), rows, columns), cols.transpose(3, 0, 1, 2, 4, 5))
    return _cropped(x_padded, pad)
