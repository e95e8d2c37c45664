# BUG: adam without bias correction: uses m and v directly instead of m/(1-beta1**t) and v/(1-beta2**t).
import numpy as np


def adam(w, dw, config=None):
    if config is None:
        config = {}
    config.setdefault('learning_rate', 1e-3)
    config.setdefault('beta1', 0.9)
    config.setdefault('beta2', 0.999)
    config.setdefault('epsilon', 1e-8)
    config.setdefault('m', np.zeros_like(w))
    config.setdefault('v', np.zeros_like(w))
    config.setdefault('t', 0)

    beta1, beta2 = config['beta1'], config['beta2']
    t = config['t'] + 1
    m = beta1 * config['m'] + (1 - beta1) * dw
    v = beta2 * config['v'] + (1 - beta2) * dw ** 2
    next_w = w - config['learning_rate'] * m / (np.sqrt(v) + config['epsilon'])

    config['t'] = t
    config['m'] = m
    config['v'] = v
    return next_w, config
