"""CNN architectures for 32x32 images.  Every model exposes ``embed(x)`` (the feature
vector shared downstream) and ``forward(x)`` (class logits, used only for training)."""

from __future__ import annotations

import torch
from torch import nn


def conv_bn(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.GELU()]


class CompactNet(nn.Module):
    """fedsim's compact CIFAR network (~2M parameters, 256-d embedding).

    A VGG-style stack in the spirit of fast CIFAR training recipes: a 3x3 stem and three
    stages of (conv, max-pool, BN, GELU, conv, BN, GELU) at 32/16/8/4 pixels, then global
    max pooling.  The embedding is the pooled 256-d vector, before the linear head.
    """

    embedding_dim = 256
    #: Fixed logit temperature: max-pooled features are large, and without it the first
    #: high-learning-rate SGD steps blow the logits up (fast CIFAR recipes scale likewise).
    logit_scale = 0.125

    def __init__(self, num_classes: int = 10, widths: tuple[int, int, int] = (64, 256, 256)) -> None:
        super().__init__()
        w1, w2, w3 = widths
        layers: list[nn.Module] = [*conv_bn(3, 32)]
        for c_in, c_out in ((32, w1), (w1, w2), (w2, w3)):
            layers += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.MaxPool2d(2),
                nn.BatchNorm2d(c_out),
                nn.GELU(),
                *conv_bn(c_out, c_out),
            ]
        self.features = nn.Sequential(*layers)
        self.embedding_dim = w3
        self.head = nn.Linear(w3, num_classes, bias=False)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).amax(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x)) * self.logit_scale


class SimpleConvNet(nn.Module):
    """The original study's small CNN (950,058 parameters for 10 classes, 768-d embedding).

    Three 3x3 convolutions (16, 32, 64 channels), each followed by ReLU and 2x2 max-pooling,
    take a 32x32 image down to 64x4x4; two fully connected layers (512 then 768 units, ReLU,
    dropout 0.25) and a linear classifier follow.  The embedding is the 768-d output of the
    second fully connected layer, after its ReLU.
    """

    embedding_dim = 768

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, 64, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(64 * 4 * 4, 512)
        self.fc2 = nn.Linear(512, self.embedding_dim)
        self.fc3 = nn.Linear(self.embedding_dim, num_classes)
        self.dropout = nn.Dropout(0.25)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        for conv in (self.conv1, self.conv2, self.conv3):
            x = self.pool(torch.relu(conv(x)))
        x = self.dropout(torch.relu(self.fc1(x.flatten(1))))
        return torch.relu(self.fc2(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.dropout(self.embed(x)))


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual connection (a 1x1 conv-BN projection when
    the stride or the width changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + self.shortcut(x))


class CifarResNet18(nn.Module):
    """The original study's CIFAR ResNet-18 (11,570,506 parameters for 10 classes).

    A 3x3 stem (64 channels, no max-pool) keeps 32x32 inputs at full resolution; four stages
    of two basic blocks (64/128/256/512 channels, strides 1/2/2/2) end at 512x4x4, which a
    4x4 average pool flattens to 512.  A linear layer maps it to the 768-d embedding
    (no activation), then dropout 0.25 and the linear classifier.
    """

    embedding_dim = 768

    def __init__(self, num_classes: int = 10, blocks: tuple[int, ...] = (2, 2, 2, 2)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        c_in = 64
        for i, (n, width) in enumerate(zip(blocks, (64, 128, 256, 512)), start=1):
            stride = 1 if i == 1 else 2
            stage = []
            for j in range(n):
                stage.append(BasicBlock(c_in, width, stride if j == 0 else 1))
                c_in = width
            self.add_module(f"layer{i}", nn.Sequential(*stage))
        self.fc1 = nn.Linear(512, self.embedding_dim)
        self.dropout = nn.Dropout(0.25)
        self.fc2 = nn.Linear(self.embedding_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = nn.functional.avg_pool2d(x, 4).flatten(1)
        return self.fc1(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(self.embed(x)))
