"""The network: torchvision's ResNet-50, never re-implemented."""

from torch import nn
from torchvision.models import resnet50

ARCH = "resnet50"


def build_model(num_classes: int = 1000) -> nn.Module:
    """Return an untrained ResNet-50 with a ``num_classes``-way head."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    return resnet50(weights=None, num_classes=num_classes)


def replace_head(net: nn.Module, num_classes: int) -> nn.Module:
    """Swap the classifier for a freshly initialised ``num_classes``-way one (fine-tuning)."""
    fc = net.fc
    assert isinstance(fc, nn.Linear)
    if fc.out_features != num_classes:
        net.fc = nn.Linear(fc.in_features, num_classes)
    return net
