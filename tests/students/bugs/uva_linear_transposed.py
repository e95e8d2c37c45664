# BUG: weight stored as (out, in) but forward computes x @ W (no transpose), backward consistent with that; shapes only work when in == out, values wrong then.
import numpy as np


class LinearModule(object):
    def __init__(self, in_features, out_features, input_layer=False):
        if input_layer:
            std = np.sqrt(1.0 / in_features)
        else:
            std = np.sqrt(2.0 / in_features)
        self.params = {
            'weight': np.random.normal(0.0, std, size=(out_features, in_features)),
            'bias': np.zeros((1, out_features)),
        }
        self.grads = {
            'weight': np.zeros((out_features, in_features)),
            'bias': np.zeros((1, out_features)),
        }
        self.x = None

    def forward(self, x):
        self.x = x
        out = x @ self.params['weight'] + self.params['bias']
        return out

    def backward(self, dout):
        self.grads['weight'] = self.x.T @ dout
        self.grads['bias'] = np.sum(dout, axis=0, keepdims=True)
        dx = dout @ self.params['weight'].T
        return dx

    def clear_cache(self):
        self.x = None
