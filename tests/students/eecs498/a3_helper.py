"""Stand-in for the course's own helper module (given to students, not graded): only what the files import."""
import torch


def softmax_loss(x, y):
    shifted = x - x.max(dim=1, keepdim=True).values
    log_probs = shifted - shifted.exp().sum(dim=1, keepdim=True).log()
    n = x.shape[0]
    loss = -log_probs[torch.arange(n), y].mean()
    dx = log_probs.exp()
    dx[torch.arange(n), y] -= 1
    return loss, dx / n
