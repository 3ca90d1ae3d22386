"""CNN architectures for 32x32 images.  Every model exposes ``embed(x)`` (the feature
vector shared downstream) and ``forward(x)`` (class logits, used only for training)."""

from __future__ import annotations

import torch
from torch import nn


def conv_bn(c_in: int, c_out: int, bn_eps: float = 1e-5, bn_momentum: float = 0.1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out, bn_eps, bn_momentum), nn.GELU()]


def patch_whitening(images: torch.Tensor, kernel_size: int = 2, eps: float = 5e-4,
                    chunk: int = 1000) -> torch.Tensor:
    """Filters that whiten the ``kernel_size`` x ``kernel_size`` patches of ``images``.

    ``images`` are normalised float images (N x C x H x W).  The (uncentred) second-moment
    matrix of all C*k*k-dim patches is accumulated in float64; its eigenvectors scaled by
    ``1/sqrt(eigenvalue + eps)`` map patches to components of (near) unit variance.  Returns
    the C*k*k filters (largest eigenvalue first) as a ``(C*k*k, C, k, k)`` conv weight.
    """
    c = images.shape[1]
    d = c * kernel_size * kernel_size
    second = torch.zeros(d, d, dtype=torch.float64)
    count = 0
    for start in range(0, len(images), chunk):
        patches = nn.functional.unfold(images[start : start + chunk].float(), kernel_size)  # n, d, L
        patches = patches.transpose(1, 2).reshape(-1, d).double()
        second += patches.T @ patches
        count += len(patches)
    eigenvalues, eigenvectors = torch.linalg.eigh(second / count)
    eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.flip(1)
    filters = eigenvectors.T / torch.sqrt(eigenvalues.clamp_min(0) + eps)[:, None]
    return filters.float().reshape(d, c, kernel_size, kernel_size)


class CompactNet(nn.Module):
    """fedsim's compact CIFAR network (~2M parameters, 256-d embedding).

    A VGG-style stack in the spirit of fast CIFAR training recipes: a stem and three stages
    of (conv, max-pool, BN, GELU, conv, BN, GELU), then global max pooling.  The embedding
    is the pooled 256-d vector, before the linear head.

    Two stems (``stem``):

    * ``"conv"`` (the default, and the layout of the first shipped weights): 3x3 conv to 32
      channels + BN + GELU, stages at 32/16/8/4 pixels;
    * ``"whiten"`` (airbench-style, Jordan 2024): a frozen 2x2 conv (no padding) whose
      12 filters whiten the training images' 2x2 patches, stacked with their negatives
      (24 channels, a learnable bias), then GELU; stages at 31/15/7/3 pixels.  The filters
      are computed from training data by :meth:`init_whitening` and stored in the
      ``state_dict`` (``features.0.weight``) like any weight.

    Training-time options: ``dirac`` initialises every 3x3 conv as (partial) identity (the
    first ``c_in`` filters pass their input channel through); ``bn_weight=False`` freezes
    the BatchNorm scales at 1 (only the shifts learn).  ``bn_eps`` and ``logit_scale``
    also act at inference, so checkpoints carry them (``model_options``).
    """

    embedding_dim = 256
    #: Fixed logit temperature: max-pooled features are large, and without it the first
    #: high-learning-rate SGD steps blow the logits up (fast CIFAR recipes scale likewise).
    logit_scale = 0.125

    def __init__(self, num_classes: int = 10, widths: tuple[int, int, int] = (64, 256, 256), stem: str = "conv",
                 dirac: bool = False, bn_weight: bool = True, bn_eps: float = 1e-5, bn_momentum: float = 0.1,
                 logit_scale: float = 0.125) -> None:
        super().__init__()
        if stem not in ("conv", "whiten"):
            raise ValueError(f"stem must be conv or whiten, got {stem!r}")
        w1, w2, w3 = widths
        self.stem = stem
        self.logit_scale = logit_scale
        if stem == "conv":
            layers: list[nn.Module] = [*conv_bn(3, 32, bn_eps, bn_momentum)]
            c0 = 32
        else:
            whiten = nn.Conv2d(3, 24, 2, bias=True)
            nn.init.zeros_(whiten.weight)
            nn.init.zeros_(whiten.bias)
            whiten.weight.requires_grad_(False)
            layers = [whiten, nn.GELU()]
            c0 = 24
        for c_in, c_out in ((c0, w1), (w1, w2), (w2, w3)):
            layers += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.MaxPool2d(2),
                nn.BatchNorm2d(c_out, bn_eps, bn_momentum),
                nn.GELU(),
                *conv_bn(c_out, c_out, bn_eps, bn_momentum),
            ]
        self.features = nn.Sequential(*layers)
        self.embedding_dim = w3
        self.head = nn.Linear(w3, num_classes, bias=False)
        for m in self.features:
            if dirac and isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3):
                with torch.no_grad():
                    nn.init.dirac_(m.weight[: min(m.in_channels, m.out_channels)])
            if not bn_weight and isinstance(m, nn.BatchNorm2d):
                m.weight.requires_grad_(False)

    @property
    def whiten(self) -> nn.Conv2d | None:
        """The frozen whitening conv (``stem="whiten"``), else None."""
        return self.features[0] if self.stem == "whiten" else None

    @torch.no_grad()
    def init_whitening(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the whitening filters from normalised training images (N x 3 x H x W)."""
        if self.whiten is None:
            raise ValueError("init_whitening needs stem='whiten'")
        filters = patch_whitening(images.cpu(), 2, eps)
        self.whiten.weight.copy_(torch.cat([filters, -filters]).to(self.whiten.weight))

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
