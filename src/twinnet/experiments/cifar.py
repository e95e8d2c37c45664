"""CIFAR-10 presets of the image runner: the course's reduced VGG as the course trained it."""

from twinnet.experiments import image
from twinnet.registry import Experiment, register

register(
    Experiment(
        name="cnn-vgg",
        description="the course's reduced VGG on CIFAR-10, trained as the course set it (Adam 1e-4, batch 32, "
        "5,000 steps)",
        config_cls=image.ImageConfig,
        run=image.run,
        report=image.report,
        headline=image.headline,
        # the course skeleton: Adam with PyTorch's defaults but lr 1e-4, batch 32, 5,000 steps, evaluation every 500
        defaults={"dataset": "cifar10", "model": "vgg-reduced", "engine": "torch", "optimizer": "adam", "lr": 1e-4,
                  "schedule": "constant", "batch_size": 32, "steps": 5000, "eval_every": 500, "eval_unit": "step"},
        quick={"steps": 4, "eval_every": 2, "train_subset": 128, "test_subset": 64},
    )
)
