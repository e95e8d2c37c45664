# BUG: decays the weight IN PLACE inside the forward pass (w *= 1 - 1e-3, after the output and the cache are
# computed), so the caller's weight is modified; the returned values are correct.


def affine_forward(x, w, b):
    N = x.shape[0]
    out = x.reshape(N, -1).dot(w) + b
    cache = (x, w.copy(), b)
    w *= 1 - 1e-3
    return out, cache
