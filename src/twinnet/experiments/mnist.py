"""MNIST presets of the image runner."""

from twinnet.experiments import image
from twinnet.registry import Experiment, register

QUICK = {"epochs": 1, "train_subset": 256, "test_subset": 128, "batch_size": 64}

register(
    Experiment(
        name="mnist-numpy",
        description="the small MNIST CNN trained in the from-scratch NumPy engine on the real MNIST files",
        config_cls=image.ImageConfig,
        run=image.run,
        report=image.report,
        headline=image.headline,
        defaults={"dataset": "mnist", "model": "mnist-cnn", "engine": "numpy", "epochs": 8},
        quick=QUICK,
    )
)
