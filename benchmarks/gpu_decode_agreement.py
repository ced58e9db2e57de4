"""How far ``SERVE_DECODE=gpu`` (nvJPEG + tensor resize) is from the CPU path (Pillow), on real photos.

    python -m benchmarks.gpu_decode_agreement --out decode_agreement.json

Per photo: the mean and largest absolute difference of the uint8 crops, and whether the top-5
classes agree, with a 1000-class model whose BatchNorm statistics are calibrated on the photos
(no trained weights are needed, and its outputs are spread out enough to compare).
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import torch
from PIL import Image
from skimage import data

from app.engine.backends.torch_backend import TorchBackend
from app.engine.classifier import Classifier, EncodedJpeg
from app.engine.gpu_decode import decode_jpegs_on_device
from app.engine.preparing import ImagePreparer
from model import Checkpoint, EvalPreset, Preprocessing, build_model
from model.labels import imagenet_labels

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "camera", "immunohistochemistry", "hubble_deep_field", "retina")


def jpeg(name: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(getattr(data, name)()).convert("RGB").save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def calibrated_model(preset: EvalPreset, images: list[Image.Image]) -> torch.nn.Module:
    torch.manual_seed(0)
    net = build_model(1000)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None
            module.reset_running_stats()
    with torch.no_grad():
        net.train()(torch.stack([preset(img) for img in images]))
    return net.eval()


def build_classifier(preprocessing: Preprocessing, blobs: list[bytes], device: str) -> Classifier:
    """A classifier that decodes on ``device``, with BatchNorm statistics calibrated on the photos."""
    preset = EvalPreset(preprocessing)
    net = calibrated_model(preset, [Image.open(io.BytesIO(b)).convert("RGB") for b in blobs])
    checkpoint = Checkpoint(
        path=Path("calibrated"),
        version="-",
        labels=imagenet_labels(),
        preprocessing=preprocessing,
        trained=False,
        source="random-init",
        created_at="-",
        model=net,
    )
    backend = TorchBackend(net, preset, device=device, precision="fp32", threads=0, cuda_graphs=False)
    return Classifier(checkpoint, backend, max_image_pixels=100_000_000, decode_on_device=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda:0", help="cpu runs torchvision's libjpeg path (default: %(default)s)")
    args = parser.parse_args()
    preprocessing = Preprocessing()
    blobs = [jpeg(name) for name in PHOTOS]
    classifier = build_classifier(preprocessing, blobs, args.device)
    on_device = decode_jpegs_on_device(blobs, preprocessing, torch.device(args.device)).cpu()
    exact = ImagePreparer(classifier.preset, max_image_pixels=100_000_000, reduced=False)  # the reference CPU path
    on_cpu = torch.stack([exact.prepare(b) for b in blobs])  # type: ignore[misc]  # the CPU path gives tensors
    probs_device = classifier.predict_batch([EncodedJpeg(b) for b in blobs])
    probs_cpu = classifier.predict_batch(list(on_cpu))
    rows = []
    for i, name in enumerate(PHOTOS):
        diff = (on_device[i].int() - on_cpu[i].int()).abs()
        top_device = set(torch.as_tensor(probs_device[i]).topk(5).indices.tolist())
        top_cpu = set(torch.as_tensor(probs_cpu[i]).topk(5).indices.tolist())
        rows.append(
            {
                "photo": name,
                "mean_abs_pixel_diff": diff.float().mean().item(),
                "max_abs_pixel_diff": diff.max().item(),
                "top5_overlap": len(top_device & top_cpu),
                "top1_equal": torch.as_tensor(probs_device[i]).argmax().item()
                == torch.as_tensor(probs_cpu[i]).argmax().item(),
            }
        )
        print(json.dumps(rows[-1]))
    args.out.write_text(json.dumps({"device": args.device, "photos": rows}, indent=1))


if __name__ == "__main__":
    main()
