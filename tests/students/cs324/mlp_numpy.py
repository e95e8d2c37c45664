"""SUSTech CS324 assignment 1 NumPy MLP (correct reference submission)."""
from modules import Linear, ReLU, SoftMax


class MLP(object):
    def __init__(self, n_inputs, n_hidden, n_classes):
        self.layers = []
        in_features = n_inputs
        for n_h in n_hidden:
            self.layers.append(Linear(in_features, n_h))
            self.layers.append(ReLU())
            in_features = n_h
        self.layers.append(Linear(in_features, n_classes))
        self.layers.append(SoftMax())

    def forward(self, x):
        out = x
        for layer in self.layers:
            out = layer.forward(out)
        return out

    def backward(self, dout):
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        return dout
