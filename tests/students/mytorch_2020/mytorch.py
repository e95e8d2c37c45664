"""A stand-in submission in the style of CMU 11-785's 2019-21 "mytorch" handout for homework 1 (written for
twinnet's tests, not a student's): ``Linear(in_feature, out_feature, weight_init_fn, bias_init_fn)`` with W
(in, out), the bias a row and the weights' gradients averaged over the batch; activations whose
``derivative()`` gives d out / d x; a softmax cross-entropy on logits and one-hot targets whose ``forward``
gives each sample's loss and whose ``derivative()`` gives d(their sum) / d logits."""

import numpy as np


class Linear:
    def __init__(self, in_feature, out_feature, weight_init_fn, bias_init_fn):
        self.W = weight_init_fn(in_feature, out_feature)
        self.b = bias_init_fn(out_feature)
        self.dW = np.zeros(self.W.shape)
        self.db = np.zeros(self.b.shape)

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, delta):
        self.dW = self.x.T @ delta / len(delta)
        self.db = delta.mean(axis=0, keepdims=True)
        return delta @ self.W.T


class Activation:
    def __init__(self):
        self.state = None

    def forward(self, x):
        raise NotImplementedError

    def derivative(self):
        raise NotImplementedError


class ReLU(Activation):
    def forward(self, x):
        self.state = np.maximum(x, 0)
        return self.state

    def derivative(self):
        return (self.state > 0).astype(float)


class SoftmaxCrossEntropy:
    def forward(self, x, y):
        self.labels = y
        shifted = x - x.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        self.sm = np.exp(log_probs)
        return -(y * log_probs).sum(axis=1)

    def derivative(self):
        return self.sm - self.labels


class BatchNorm:
    """gamma, beta and the statistics as (1, D); eps 1e-8; the running statistics keep alpha of the old ones,
    updated with the batch's biased variance; evaluation by forward(x, eval=True)."""

    def __init__(self, fan_in, alpha=0.9):
        self.alpha, self.eps = alpha, 1e-8
        self.gamma, self.beta = np.ones((1, fan_in)), np.zeros((1, fan_in))
        self.dgamma, self.dbeta = np.zeros((1, fan_in)), np.zeros((1, fan_in))
        self.running_mean, self.running_var = np.zeros((1, fan_in)), np.ones((1, fan_in))

    def forward(self, x, eval=False):
        if eval:
            return self.gamma * (x - self.running_mean) / np.sqrt(self.running_var + self.eps) + self.beta
        self.mean, self.var = x.mean(axis=0, keepdims=True), x.var(axis=0, keepdims=True)
        self.norm = (x - self.mean) / np.sqrt(self.var + self.eps)
        self.running_mean = self.alpha * self.running_mean + (1 - self.alpha) * self.mean
        self.running_var = self.alpha * self.running_var + (1 - self.alpha) * self.var
        return self.gamma * self.norm + self.beta

    def backward(self, delta):
        self.dgamma = (delta * self.norm).sum(axis=0, keepdims=True)
        self.dbeta = delta.sum(axis=0, keepdims=True)
        dnorm = delta * self.gamma
        return (dnorm - dnorm.mean(axis=0) - self.norm * (dnorm * self.norm).mean(axis=0)) / np.sqrt(self.var + self.eps)
