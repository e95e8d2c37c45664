"""Datasets: in-memory arrays batched by index."""

from twinnet.data.arrays import ArrayDataset, Split
from twinnet.data.cifar import CifarSplit, channel_stats, load_cifar10
from twinnet.data.mnist import load_fashion_mnist, load_mnist
from twinnet.data.toy import TOY_DATASETS, make_toy

__all__ = ["ArrayDataset", "Split", "TOY_DATASETS", "make_toy"]
