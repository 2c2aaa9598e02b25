"""Model registry: ``name -> factory(input_shape, num_classes, **options)``.

Overriding an option a model does not take is an error, not a silent no-op.
"""

from __future__ import annotations

import inspect
import math
from typing import Callable

import torch
from torch import nn

from feedwise.errors import FeedwiseError


def mlp(input_shape, num_classes, widths=(256, 256)) -> nn.Module:
    """Fully connected ReLU network; inputs are flattened."""
    layers: list[nn.Module] = [nn.Flatten()]
    prev = int(math.prod(input_shape))
    for w in widths:
        layers += [nn.Linear(prev, int(w)), nn.ReLU()]
        prev = int(w)
    layers.append(nn.Linear(prev, num_classes))
    return nn.Sequential(*layers)


def simple_cnn(input_shape, num_classes, channels=(32, 64), hidden=1024) -> nn.Module:
    """Shallue et al.'s Simple CNN: conv5x5-32, maxpool, conv5x5-64, maxpool, fc1024, fc-classes."""
    shape = tuple(input_shape)
    if len(shape) == 1:  # 1-D signals (mnist1d): the same network with 1-D convolutions
        conv, pool, cin, spatial = nn.Conv1d, nn.MaxPool1d, 1, shape
    elif len(shape) == 3:
        conv, pool, cin, spatial = nn.Conv2d, nn.MaxPool2d, shape[0], shape[1:]
    else:
        raise FeedwiseError(f"simple-cnn needs inputs of shape (C, H, W) or (L,), got {shape}")
    c1, c2 = channels
    reduced = [s // 2 // 2 for s in spatial]
    if min(reduced) < 1:
        raise FeedwiseError(f"simple-cnn: input {shape} is too small for two 2x poolings")
    layers: list[nn.Module] = []
    if len(shape) == 1:
        layers.append(nn.Unflatten(1, (1, shape[0])))
    layers += [
        conv(cin, c1, 5, padding=2), nn.ReLU(), pool(2),
        conv(c1, c2, 5, padding=2), nn.ReLU(), pool(2),
        nn.Flatten(), nn.Linear(c2 * math.prod(reduced), hidden), nn.ReLU(), nn.Linear(hidden, num_classes),
    ]
    return nn.Sequential(*layers)


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = (
            nn.Identity() if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.short(x))


class ResNet(nn.Module):
    """CIFAR-style ResNet with depth 6n+2 (resnet-8: n=1, stages of 16/32/64 channels)."""

    def __init__(self, input_shape, num_classes, depth=8, width=16):
        super().__init__()
        if len(input_shape) != 3:
            raise FeedwiseError(f"resnet needs image inputs (C, H, W), got {tuple(input_shape)}")
        if (depth - 2) % 6:
            raise FeedwiseError(f"resnet depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        self.stem = nn.Sequential(nn.Conv2d(input_shape[0], width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        blocks, cin = [], width
        for stage, cout in enumerate((width, 2 * width, 4 * width)):
            for i in range(n):
                blocks.append(_BasicBlock(cin, cout, 2 if (stage > 0 and i == 0) else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def resnet8(input_shape, num_classes, width=16) -> nn.Module:
    return ResNet(input_shape, num_classes, depth=8, width=width)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp": mlp,
    "simple-cnn": simple_cnn,
    "resnet-8": resnet8,
}


def build_model(name: str, input_shape, num_classes: int, **options) -> nn.Module:
    if name not in MODELS:
        raise FeedwiseError(f"unknown model '{name}' (known: {', '.join(MODELS)})")
    factory = MODELS[name]
    allowed = set(inspect.signature(factory).parameters) - {"input_shape", "num_classes"}
    unknown = set(options) - allowed
    if unknown:
        raise FeedwiseError(f"model '{name}' has no option {', '.join(sorted(unknown))} (it takes: {', '.join(sorted(allowed))})")
    return factory(tuple(input_shape), num_classes, **options)
