# A stand-in for a reader's common/util.py: the image-to-column unrolling the book's convolution and pooling use.
import numpy as np


def im2col(images, filter_h, filter_w, stride=1, pad=0):
    """(N, C, H, W) images -> (N * out_h * out_w, C * filter_h * filter_w): one row per window."""
    n, c, h, w = images.shape
    out_h, out_w = (h + 2 * pad - filter_h) // stride + 1, (w + 2 * pad - filter_w) // stride + 1
    padded = np.pad(images, [(0, 0), (0, 0), (pad, pad), (pad, pad)])
    cols = np.zeros((n, c, filter_h, filter_w, out_h, out_w))
    for i in range(filter_h):
        for j in range(filter_w):
            cols[:, :, i, j] = padded[:, :, i:i + stride * out_h:stride, j:j + stride * out_w:stride]
    return cols.transpose(0, 4, 5, 1, 2, 3).reshape(n * out_h * out_w, -1)


def col2im(cols, shape, filter_h, filter_w, stride=1, pad=0):
    """im2col's adjoint: each window's row added back where it came from."""
    n, c, h, w = shape
    out_h, out_w = (h + 2 * pad - filter_h) // stride + 1, (w + 2 * pad - filter_w) // stride + 1
    cols = cols.reshape(n, out_h, out_w, c, filter_h, filter_w).transpose(0, 3, 4, 5, 1, 2)
    padded = np.zeros((n, c, h + 2 * pad, w + 2 * pad))
    for i in range(filter_h):
        for j in range(filter_w):
            padded[:, :, i:i + stride * out_h:stride, j:j + stride * out_w:stride] += cols[:, :, i, j]
    return padded[:, :, pad:h + pad, pad:w + pad]
