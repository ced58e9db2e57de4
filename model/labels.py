"""ImageNet-1k class names, from torchvision's own list (no copy kept here)."""

from torchvision.models import ResNet50_Weights


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet class names in class-id order."""
    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])
