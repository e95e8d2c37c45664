"""EECS 498 assignment 3's fully connected layers on torch tensors, as static methods of classes (a correct
stand-in submission written for the tests)."""
import torch
from a3_helper import softmax_loss


class Linear(object):

    @staticmethod
    def forward(x, w, b):
        out = x.reshape(x.shape[0], -1).mm(w) + b
        return out, (x, w, b)

    @staticmethod
    def backward(dout, cache):
        x, w, b = cache
        dx = dout.mm(w.t()).reshape(x.shape)
        dw = x.reshape(x.shape[0], -1).t().mm(dout)
        db = dout.sum(dim=0)
        return dx, dw, db


class ReLU(object):

    @staticmethod
    def forward(x):
        return x.clamp(min=0), x

    @staticmethod
    def backward(dout, cache):
        return dout * (cache > 0)


class Dropout(object):

    @staticmethod
    def forward(x, dropout_param):
        p, mode = dropout_param['p'], dropout_param['mode']  # p: the probability of dropping
        if 'seed' in dropout_param:
            torch.manual_seed(dropout_param['seed'])
        mask = None
        if mode == 'train':
            mask = (torch.rand(x.shape, dtype=x.dtype) >= p).to(x.dtype) / (1 - p)
            out = x * mask
        else:
            out = x
        return out, (dropout_param, mask)

    @staticmethod
    def backward(dout, cache):
        dropout_param, mask = cache
        return dout * mask if dropout_param['mode'] == 'train' else dout


class FullyConnectedNet(object):
    """{linear - relu} x (L - 1) - linear - softmax; its parameters in self.params, torch tensors."""

    def __init__(self, hidden_dims, input_dim=3 * 32 * 32, num_classes=10, dropout=0.0, reg=0.0,
                 weight_scale=1e-2, seed=None, dtype=torch.float, device="cpu"):
        self.reg = reg
        self.num_layers = 1 + len(hidden_dims)
        self.dtype = dtype
        self.params = {}
        dims = [input_dim] + list(hidden_dims) + [num_classes]
        for i in range(self.num_layers):
            self.params["W%d" % (i + 1)] = weight_scale * torch.randn(dims[i], dims[i + 1], dtype=dtype,
                                                                      device=device)
            self.params["b%d" % (i + 1)] = torch.zeros(dims[i + 1], dtype=dtype, device=device)

    def loss(self, X, y=None):
        X = X.to(self.dtype)
        out, caches = X, []
        for i in range(1, self.num_layers):
            out, linear_cache = Linear.forward(out, self.params["W%d" % i], self.params["b%d" % i])
            out, relu_cache = ReLU.forward(out)
            caches.append((linear_cache, relu_cache))
        last = self.num_layers
        scores, last_cache = Linear.forward(out, self.params["W%d" % last], self.params["b%d" % last])
        if y is None:
            return scores
        loss, dout = softmax_loss(scores, y)
        grads = {}
        dout, grads["W%d" % last], grads["b%d" % last] = Linear.backward(dout, last_cache)
        for i in range(last - 1, 0, -1):
            linear_cache, relu_cache = caches[i - 1]
            dout, grads["W%d" % i], grads["b%d" % i] = Linear.backward(ReLU.backward(dout, relu_cache), linear_cache)
        for i in range(1, last + 1):
            W = self.params["W%d" % i]
            loss += 0.5 * self.reg * torch.sum(W * W)
            grads["W%d" % i] += self.reg * W
        return loss, grads


def sgd_momentum(w, dw, config=None):
    config = {} if config is None else config
    config.setdefault('learning_rate', 1e-2)
    config.setdefault('momentum', 0.9)
    v = config.get('velocity', torch.zeros_like(w))
    v = config['momentum'] * v - config['learning_rate'] * dw
    config['velocity'] = v
    return w + v, config


def rmsprop(w, dw, config=None):
    config = {} if config is None else config
    config.setdefault('learning_rate', 1e-2)
    config.setdefault('decay_rate', 0.99)
    config.setdefault('epsilon', 1e-8)
    config.setdefault('cache', torch.zeros_like(w))
    config['cache'] = config['decay_rate'] * config['cache'] + (1 - config['decay_rate']) * dw * dw
    return w - config['learning_rate'] * dw / (config['cache'].sqrt() + config['epsilon']), config


def adam(w, dw, config=None):
    config = {} if config is None else config
    config.setdefault('learning_rate', 1e-3)
    config.setdefault('beta1', 0.9)
    config.setdefault('beta2', 0.999)
    config.setdefault('epsilon', 1e-8)
    config.setdefault('m', torch.zeros_like(w))
    config.setdefault('v', torch.zeros_like(w))
    config.setdefault('t', 0)
    config['t'] += 1
    config['m'] = config['beta1'] * config['m'] + (1 - config['beta1']) * dw
    config['v'] = config['beta2'] * config['v'] + (1 - config['beta2']) * dw * dw
    m_hat = config['m'] / (1 - config['beta1'] ** config['t'])
    v_hat = config['v'] / (1 - config['beta2'] ** config['t'])
    return w - config['learning_rate'] * m_hat / (v_hat.sqrt() + config['epsilon']), config
