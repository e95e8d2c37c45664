"""Experiments; importing this package registers each of them."""

from twinnet.experiments import mlp_compare, mnist  # noqa: F401
