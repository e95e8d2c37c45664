"""Experiments; importing this package registers each of them."""

from twinnet.experiments import ablation, cifar, cifar_time, mlp_compare, mnist  # noqa: F401
from twinnet.experiments import palindrome, palindrome_sweep, rnn_gradients  # noqa: F401
