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
