"""UvA DL1 assignment 1 NumPy MLP (correct reference submission)."""
from modules import LinearModule, ReLUModule, SoftMaxModule


class MLP(object):
    def __init__(self, n_inputs, n_hidden, n_classes):
        self.layers = []
        in_features = n_inputs
        for i, n_h in enumerate(n_hidden):
            self.layers.append(LinearModule(in_features, n_h, input_layer=(i == 0)))
            self.layers.append(ReLUModule())
            in_features = n_h
        self.layers.append(LinearModule(in_features, n_classes, input_layer=(len(n_hidden) == 0)))
        self.layers.append(SoftMaxModule())

    def forward(self, x):
        out = x
        for layer in self.layers:
            out = layer.forward(out)
        return out

    def backward(self, dout):
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        return dout

    def clear_cache(self):
        for layer in self.layers:
            layer.clear_cache()
