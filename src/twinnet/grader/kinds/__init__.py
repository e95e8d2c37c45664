"""The layer kinds a grader checks: random configurations, the references, and how to call a
student's layer of that kind under a convention (``twinnet.grader.conventions``).

Every check runs in float64 and returns ``{quantity: (student's value, [references])}``; the
references are PyTorch's autograd and, where twinnet has one, the NumPy twin. A configuration's
inputs are fresh copies for the student: any write into them is reported.

One module to a family of layers, each ending in its ``KINDS``: ``dense`` (linear, activations, dropout),
``image`` (convolution, pooling), ``norm``, ``losses`` and ``cross_entropy``, ``pointwise`` (MSE, L1, binary
cross-entropy), ``recurrent``, ``optim``, ``mlp`` and ``networks`` (CS231n's whole networks); what they share is
in ``base``, and the module style's calls (building a class, its parameters and gradients) in ``modules``.
"""

from __future__ import annotations

from twinnet.grader.kinds import cross_entropy, dense, image, losses, mlp, networks, norm, optim, pointwise, recurrent
from twinnet.grader.kinds.base import Context, Halted, Kind, NotApplicable, Quantities
from twinnet.grader.kinds.modules import ARGUMENTS


# every kind by name, in the order ``twinnet check --help`` lists them
KINDS: dict[str, Kind] = {k.name: k for family in (dense, image, norm, losses, cross_entropy, pointwise, recurrent,
                                                  optim, mlp, networks) for k in family.KINDS}

__all__ = ["ARGUMENTS", "KINDS", "Context", "Halted", "Kind", "NotApplicable", "Quantities"]
