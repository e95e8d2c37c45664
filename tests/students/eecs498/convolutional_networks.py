"""EECS 498 assignment 3's convolutional layers on torch tensors (a correct stand-in submission written for
the tests): loops over output positions, as the naive versions are asked to be."""
import torch
from fully_connected_networks import Linear, ReLU  # noqa: F401  (the course's own file imports them too)


class Conv(object):

    @staticmethod
    def forward(x, w, b, conv_param):
        stride, pad = conv_param['stride'], conv_param['pad']
        n, _, h, wd = x.shape
        f, _, hh, ww = w.shape
        xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        h_out, w_out = 1 + (h + 2 * pad - hh) // stride, 1 + (wd + 2 * pad - ww) // stride
        out = torch.zeros((n, f, h_out, w_out), dtype=x.dtype)
        for i in range(h_out):
            for j in range(w_out):
                window = xp[:, :, i * stride:i * stride + hh, j * stride:j * stride + ww]
                out[:, :, i, j] = torch.einsum('nchw,fchw->nf', window, w) + b
        return out, (x, w, b, conv_param)

    @staticmethod
    def backward(dout, cache):
        x, w, b, conv_param = cache
        stride, pad = conv_param['stride'], conv_param['pad']
        _, _, hh, ww = w.shape
        xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        dxp, dw = torch.zeros_like(xp), torch.zeros_like(w)
        for i in range(dout.shape[2]):
            for j in range(dout.shape[3]):
                rows, cols = slice(i * stride, i * stride + hh), slice(j * stride, j * stride + ww)
                dxp[:, :, rows, cols] += torch.einsum('nf,fchw->nchw', dout[:, :, i, j], w)
                dw += torch.einsum('nf,nchw->fchw', dout[:, :, i, j], xp[:, :, rows, cols])
        dx = dxp[:, :, pad:pad + x.shape[2], pad:pad + x.shape[3]]
        return dx, dw, dout.sum(dim=(0, 2, 3))


class MaxPool(object):

    @staticmethod
    def forward(x, pool_param):
        ph, pw, s = pool_param['pool_height'], pool_param['pool_width'], pool_param['stride']
        n, c, h, w = x.shape
        out = torch.zeros((n, c, 1 + (h - ph) // s, 1 + (w - pw) // s), dtype=x.dtype)
        for i in range(out.shape[2]):
            for j in range(out.shape[3]):
                out[:, :, i, j] = x[:, :, i * s:i * s + ph, j * s:j * s + pw].amax(dim=(2, 3))
        return out, (x, pool_param)

    @staticmethod
    def backward(dout, cache):
        x, pool_param = cache
        ph, pw, s = pool_param['pool_height'], pool_param['pool_width'], pool_param['stride']
        dx = torch.zeros_like(x)
        for i in range(dout.shape[2]):
            for j in range(dout.shape[3]):
                window = x[:, :, i * s:i * s + ph, j * s:j * s + pw].reshape(x.shape[0], x.shape[1], -1)
                first = window.argmax(dim=2)  # the first maximum of each window takes the gradient
                r, q = first // pw, first % pw
                for a in range(x.shape[0]):
                    for k in range(x.shape[1]):
                        dx[a, k, i * s + r[a, k], j * s + q[a, k]] += dout[a, k, i, j]
        return dx


class BatchNorm(object):

    @staticmethod
    def forward(x, gamma, beta, bn_param):
        mode, eps, momentum = bn_param['mode'], bn_param.get('eps', 1e-5), bn_param.get('momentum', 0.9)
        d = x.shape[1]
        running_mean = bn_param.get('running_mean', torch.zeros(d, dtype=x.dtype))
        running_var = bn_param.get('running_var', torch.zeros(d, dtype=x.dtype))
        cache = None
        if mode == 'train':
            mean, var = x.mean(dim=0), x.var(dim=0, unbiased=False)
            std = (var + eps).sqrt()
            x_hat = (x - mean) / std
            out = gamma * x_hat + beta
            cache = (x_hat, gamma, std)
            running_mean = momentum * running_mean + (1 - momentum) * mean
            running_var = momentum * running_var + (1 - momentum) * var
        elif mode == 'test':
            out = gamma * (x - running_mean) / (running_var + eps).sqrt() + beta
        else:
            raise ValueError('Invalid forward batchnorm mode "%s"' % mode)
        bn_param['running_mean'], bn_param['running_var'] = running_mean, running_var
        return out, cache

    @staticmethod
    def backward(dout, cache):
        x_hat, gamma, std = cache
        dbeta, dgamma = dout.sum(dim=0), (dout * x_hat).sum(dim=0)
        dx_hat = dout * gamma
        dx = (dx_hat - dx_hat.mean(dim=0) - x_hat * (dx_hat * x_hat).mean(dim=0)) / std
        return dx, dgamma, dbeta

    @staticmethod
    def backward_alt(dout, cache):
        x_hat, gamma, std = cache
        n = dout.shape[0]
        dbeta, dgamma = dout.sum(dim=0), (dout * x_hat).sum(dim=0)
        dx = gamma * (n * dout - dbeta - x_hat * dgamma) / (n * std)
        return dx, dgamma, dbeta
