"""MNIST presets of the image runner."""

from twinnet.experiments import image
from twinnet.registry import Published

QUICK = {"epochs": 1, "train_subset": 256, "test_subset": 128, "batch_size": 64}
MNIST_BEST = (Published(0.9971, "the best published MNIST figure in the course's reports"),)

image.preset(
    "mnist-numpy",
    "the small MNIST CNN trained in the from-scratch NumPy engine on the real MNIST files",
    {"dataset": "mnist", "model": "mnist-cnn", "engine": "numpy", "epochs": 8},
    QUICK,
    MNIST_BEST,
)

image.preset(
    "cnn-mnist",
    "the best CIFAR-10 recipe (reduced VGG, AdamW, one-cycle, label smoothing) on MNIST: one "
    "channel, 28x28, crops and small rotations but no flips",
    {"dataset": "mnist", "model": "vgg-reduced-mnist", "engine": "torch", "optimizer": "adamw",
     "lr": 2e-3, "weight_decay": 0.05, "schedule": "onecycle", "label_smoothing": 0.1,
     "batch_size": 128, "epochs": 4, "crop_pad": 2, "rotate": 10.0},
    QUICK,
    MNIST_BEST,
)
