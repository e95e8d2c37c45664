# BUG: decays gamma IN PLACE inside the forward pass (gamma -= 1e-3 * gamma, after the output and the cache are
# computed), so the caller's gamma is modified; the returned values and running statistics are correct.
import numpy as np


def batchnorm_forward(x, gamma, beta, bn_param):
    mode = bn_param['mode']
    eps = bn_param.get('eps', 1e-5)
    momentum = bn_param.get('momentum', 0.9)
    D = x.shape[1]
    running_mean = bn_param.get('running_mean', np.zeros(D, dtype=x.dtype))
    running_var = bn_param.get('running_var', np.zeros(D, dtype=x.dtype))
    if mode == 'train':
        mu, var = np.mean(x, axis=0), np.var(x, axis=0)
        std = np.sqrt(var + eps)
        x_hat = (x - mu) / std
        out = gamma * x_hat + beta
        cache = (x_hat, gamma.copy(), std)
        running_mean = momentum * running_mean + (1 - momentum) * mu
        running_var = momentum * running_var + (1 - momentum) * var
        gamma -= 1e-3 * gamma
    else:
        out = gamma * (x - running_mean) / np.sqrt(running_var + eps) + beta
        cache = None
    bn_param['running_mean'] = running_mean
    bn_param['running_var'] = running_var
    return out, cache
