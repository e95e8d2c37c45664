"""CS231n classifiers/cnn.py (correct reference submission): conv - relu - 2x2 max pool - affine - relu - affine -
softmax, its parameters in self.params."""
import numpy as np

from .layers import (affine_backward, affine_forward, conv_backward_naive, conv_forward_naive,
                     max_pool_backward_naive, max_pool_forward_naive, relu_backward, relu_forward, softmax_loss)


class ThreeLayerConvNet(object):
    def __init__(self, input_dim=(3, 32, 32), num_filters=32, filter_size=7, hidden_dim=100, num_classes=10,
                 weight_scale=1e-3, reg=0.0, dtype=np.float32):
        self.params = {}
        self.reg = reg
        self.dtype = dtype
        C, H, W = input_dim
        self.params["W1"] = weight_scale * np.random.randn(num_filters, C, filter_size, filter_size)
        self.params["b1"] = np.zeros(num_filters)
        self.params["W2"] = weight_scale * np.random.randn(num_filters * (H // 2) * (W // 2), hidden_dim)
        self.params["b2"] = np.zeros(hidden_dim)
        self.params["W3"] = weight_scale * np.random.randn(hidden_dim, num_classes)
        self.params["b3"] = np.zeros(num_classes)
        for k, v in self.params.items():
            self.params[k] = v.astype(dtype)

    def loss(self, X, y=None):
        W1, b1 = self.params["W1"], self.params["b1"]
        W2, b2 = self.params["W2"], self.params["b2"]
        W3, b3 = self.params["W3"], self.params["b3"]
        conv_param = {"stride": 1, "pad": (W1.shape[2] - 1) // 2}
        pool_param = {"pool_height": 2, "pool_width": 2, "stride": 2}
        out, conv_cache = conv_forward_naive(X, W1, b1, conv_param)
        out, relu1_cache = relu_forward(out)
        out, pool_cache = max_pool_forward_naive(out, pool_param)
        out, affine1_cache = affine_forward(out, W2, b2)
        out, relu2_cache = relu_forward(out)
        scores, affine2_cache = affine_forward(out, W3, b3)
        if y is None:
            return scores
        loss, dout = softmax_loss(scores, y)
        loss += 0.5 * self.reg * (np.sum(W1 * W1) + np.sum(W2 * W2) + np.sum(W3 * W3))
        grads = {}
        dout, grads["W3"], grads["b3"] = affine_backward(dout, affine2_cache)
        dout = relu_backward(dout, relu2_cache)
        dout, grads["W2"], grads["b2"] = affine_backward(dout, affine1_cache)
        dout = max_pool_backward_naive(dout, pool_cache)
        dout = relu_backward(dout, relu1_cache)
        dout, grads["W1"], grads["b1"] = conv_backward_naive(dout, conv_cache)
        for key in ("W1", "W2", "W3"):
            grads[key] += self.reg * self.params[key]
        return loss, grads
