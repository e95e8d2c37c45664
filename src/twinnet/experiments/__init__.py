"""Experiments; importing this package registers each of them."""

from twinnet.experiments import ablation, cifar, cifar_time, engine_check, engine_compare, mlp_compare  # noqa: F401
from twinnet.experiments import mnist  # noqa: F401
from twinnet.experiments import palindrome, palindrome_sweep, reproduce, rnn_gradients  # noqa: F401
