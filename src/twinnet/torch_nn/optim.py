"""Muon (Jordan et al., 2024: momentum orthogonalised by Newton-Schulz) for convolution filters, and
Nesterov SGD for every other parameter, as one ``torch.optim.Optimizer`` whose groups a schedule scales.

A group with ``orthogonalize=True`` (convolution filters, 2-d and up) takes Muon's step: the momentum
buffer ``b = m * b + g``, its Nesterov look-ahead ``u = g + m * b``, the weight rescaled to the norm
sqrt(out channels) (so that only its direction learns), then ``p -= lr * O(u)``, where ``O`` is a few
quintic Newton-Schulz iterations that push every singular value of ``u`` (reshaped out x rest) towards 1.
Its scale does not depend on the loss's, so a mean loss and a summed one take the same ``lr``; weight
decay is not applied (the rescaling holds the weight's norm). Any other group follows ``torch.optim.SGD``
exactly (weight decay added to the gradient, momentum, Nesterov).
"""

from __future__ import annotations

import torch

# the quintic's coefficients (Jordan et al.): the steepest slope at zero that still keeps every singular
# value within about [0.7, 1.2] after a few iterations, which trains as well as the exact U V^T does
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def orthogonalize(g: torch.Tensor, steps: int = 3, eps: float = 1e-7) -> torch.Tensor:
    """``g`` (2-d) with its singular values moved towards 1 by ``steps`` Newton-Schulz iterations,
    its singular vectors kept: roughly U V^T of g's SVD."""
    a, b, c = NS_COEFFICIENTS
    wide = g.shape[0] <= g.shape[1]
    x = g if wide else g.T
    x = x / (x.norm() + eps)  # every singular value <= 1, where the iteration converges
    for _ in range(steps):
        gram = x @ x.T  # the smaller side's Gram matrix
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x if wide else x.T


class Muon(torch.optim.Optimizer):
    """Muon for groups marked ``orthogonalize=True``, Nesterov SGD for the others (see the module)."""

    def __init__(self, params, lr: float, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0, ns_steps: int = 3) -> None:
        if not lr >= 0 or not momentum >= 0 or not weight_decay >= 0:
            raise ValueError(f"lr, momentum and weight_decay must be >= 0, got {lr}, {momentum}, {weight_decay}")
        if nesterov and momentum <= 0:
            raise ValueError("Nesterov momentum needs momentum > 0")
        if ns_steps < 1:
            raise ValueError(f"ns_steps must be >= 1, got {ns_steps}")
        super().__init__(params, {"lr": lr, "momentum": momentum, "nesterov": nesterov,
                                  "weight_decay": weight_decay, "orthogonalize": False, "ns_steps": ns_steps})
        for group in self.param_groups:
            if group["orthogonalize"] and any(p.ndim < 2 for p in group["params"]):
                raise ValueError("orthogonalize=True is for weights of 2 dimensions or more (filters, matrices)")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, m = group["lr"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if group["weight_decay"] and not group["orthogonalize"]:
                    g = g.add(p, alpha=group["weight_decay"])
                if m:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        buf = state["momentum_buffer"] = g.detach().clone()
                    else:
                        buf = state["momentum_buffer"].mul_(m).add_(g)
                    g = g.add(buf, alpha=m) if group["nesterov"] else buf
                if group["orthogonalize"]:
                    p.mul_(len(p) ** 0.5 / p.norm())  # the weight's norm held at sqrt(out): its direction learns
                    g = orthogonalize(g.reshape(len(g), -1), group["ns_steps"]).view_as(p)
                p.add_(g, alpha=-lr)
        return loss
