"""The residual block: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))."""

from __future__ import annotations

from twinnet.numpy_nn.activation import ReLU
from twinnet.numpy_nn.conv import Conv2d
from twinnet.numpy_nn.module import Module, Sequential
from twinnet.numpy_nn.norm import BatchNorm2d


class ResidualBlock(Module):
    """Two 3x3 conv-BN layers and a shortcut (1x1 conv-BN when the shape changes); twin of torch_nn's."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = BatchNorm2d(out_channels)
        self.relu1 = ReLU()
        self.conv2 = Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = BatchNorm2d(out_channels)
        if stride != 1 or in_channels != out_channels:
            self.shortcut = Sequential(Conv2d(in_channels, out_channels, 1, stride, 0, bias=False),
                                       BatchNorm2d(out_channels))
        else:
            self.shortcut = None
        self.relu2 = ReLU()

    def forward(self, x):
        main = self.bn2.forward(self.conv2.forward(self.relu1.forward(self.bn1.forward(self.conv1.forward(x)))))
        skip = x if self.shortcut is None else self.shortcut.forward(x)
        return self.relu2.forward(main + skip)

    def backward(self, dout):
        d = self.relu2.backward(dout)  # the sum sends d to both branches
        dx = self.conv1.backward(self.bn1.backward(self.relu1.backward(self.conv2.backward(self.bn2.backward(d)))))
        dx = dx + (d if self.shortcut is None else self.shortcut.backward(d))
        return dx
