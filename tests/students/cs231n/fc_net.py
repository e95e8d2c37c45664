"""CS231n classifiers/fc_net.py (correct reference submission): a fully connected network of affine-ReLU layers,
its parameters in self.params, loss(X) the scores and loss(X, y) the loss and gradients."""
import numpy as np

from .layers import affine_backward, affine_forward, relu_backward, relu_forward, softmax_loss


class FullyConnectedNet(object):
    def __init__(self, hidden_dims, input_dim=3 * 32 * 32, num_classes=10, dropout_keep_ratio=1,
                 normalization=None, reg=0.0, weight_scale=1e-2, dtype=np.float32, seed=None):
        self.reg = reg
        self.num_layers = 1 + len(hidden_dims)
        self.dtype = dtype
        self.params = {}
        dims = [input_dim] + list(hidden_dims) + [num_classes]
        for i in range(self.num_layers):
            self.params["W%d" % (i + 1)] = weight_scale * np.random.randn(dims[i], dims[i + 1])
            self.params["b%d" % (i + 1)] = np.zeros(dims[i + 1])
        for k, v in self.params.items():
            self.params[k] = v.astype(dtype)

    def loss(self, X, y=None):
        X = X.astype(self.dtype)
        out, caches = X, []
        for i in range(1, self.num_layers):
            out, affine_cache = affine_forward(out, self.params["W%d" % i], self.params["b%d" % i])
            out, relu_cache = relu_forward(out)
            caches.append((affine_cache, relu_cache))
        last = self.num_layers
        scores, last_cache = affine_forward(out, self.params["W%d" % last], self.params["b%d" % last])
        if y is None:
            return scores
        loss, dout = softmax_loss(scores, y)
        grads = {}
        dout, grads["W%d" % last], grads["b%d" % last] = affine_backward(dout, last_cache)
        for i in range(last - 1, 0, -1):
            affine_cache, relu_cache = caches[i - 1]
            dout = relu_backward(dout, relu_cache)
            dout, grads["W%d" % i], grads["b%d" % i] = affine_backward(dout, affine_cache)
        for i in range(1, last + 1):
            W = self.params["W%d" % i]
            loss += 0.5 * self.reg * np.sum(W * W)
            grads["W%d" % i] += self.reg * W
        return loss, grads
