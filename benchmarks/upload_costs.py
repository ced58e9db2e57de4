"""Where an upload's CPU goes before the model, per photo class: body, header, decode, orientation, resize.

    python -m benchmarks.upload_costs                    # 0.2MP, 2MP, 12MP; median of 15 per step
    python -m benchmarks.upload_costs --classes 12MP --repeats 31

Each step runs in this process, alone, as the service runs it: the body through ``app.http.uploads`` from an
ASGI ``receive`` handing it over in 256 KB messages (what uvicorn on uvloop passes on for a large body on
loopback), as a multipart upload and as a raw ``image/jpeg`` body; "multipart, Starlette's form" is
``Request.form()`` as the service read uploads before (a file part past 1 MB spilled to a temporary file,
each later chunk written through a worker thread), kept for the comparison. Then, on a decode thread's
side, ``model.decoding.decode_for_eval``'s steps at the eval preset of a 224 crop (resize 232). Figures are
CPU milliseconds of the whole process (so worker threads count), the median of ``--repeats``; on a shared
machine read them as ratios. What is not here: the HTTP server's own parsing and copies of the body
(uvicorn and h11), the batching, the model and the response, which ``benchmarks.cpu`` measures end to end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable, Coroutine

from PIL import Image
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.types import Message
from torch import Tensor
from torchvision.transforms import functional as F

from app.engine.imaging import open_image
from app.http.uploads import read_single_upload
from benchmarks.loadgen import multipart_upload
from benchmarks.photos import UPLOAD_CLASSES, upload_class
from model import EvalPreset, Preprocessing
from model.decoding import MARGIN, dct_scale
from model.images import upright_rgb
from model.presets import Box, resized_size

CHUNK = 256_000
LIMIT = 64 * 1024 * 1024
PRESET = EvalPreset(Preprocessing())  # the served 232 resize, 224 crop
LOOP = asyncio.new_event_loop()


def body_request(content_type: str, body: bytes) -> Request:
    """A request whose ``receive`` hands ``body`` over in ``CHUNK``-sized messages."""
    chunks = [body[i : i + CHUNK] for i in range(0, len(body), CHUNK)] or [b""]
    pending = iter(range(len(chunks)))

    async def receive() -> Message:
        index = next(pending)
        return {"type": "http.request", "body": chunks[index], "more_body": index < len(chunks) - 1}

    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    return Request({"type": "http", "method": "POST", "path": "/predict", "headers": headers}, receive)


async def starlette_form(request: Request) -> bytes:
    """How uploads were read before: Starlette's form parser, its default spooling, then ``read``."""
    form = await request.form()
    try:
        part = form["file"]
        assert isinstance(part, UploadFile)
        return await part.read()
    finally:
        await form.close()


def cpu_ms(step: Callable[[], object], repeats: int) -> float:
    """The median CPU time of ``step`` in milliseconds, every thread of the process counted."""
    times = []
    for _ in range(repeats):
        began = time.process_time()
        step()
        times.append(time.process_time() - began)
    return statistics.median(times) * 1000


async def service_read(request: Request) -> bytes:
    return (await read_single_upload(request, LIMIT)).data


def body_steps(photo: bytes) -> dict[str, Callable[[], object]]:
    content_type, body = multipart_upload(photo, "photo.jpg")

    def run(read: Callable[[Request], Coroutine[None, None, bytes]], content_type: str, body: bytes) -> None:
        # Not asyncio.run: on its way out (Python 3.11) it prints the finished task, whole body included, into
        # an error message it then discards (signal.signal's handler lookup), milliseconds per MB.
        assert len(LOOP.run_until_complete(read(body_request(content_type, body)))) == len(photo)

    return {
        "multipart (service)": lambda: run(service_read, content_type, body),
        "multipart, Starlette's form": lambda: run(starlette_form, content_type, body),
        "raw body": lambda: run(service_read, "image/jpeg", photo),
    }


def decode_steps(photo: bytes) -> dict[str, Callable[[], object]]:
    resize = PRESET.preprocessing.resize_size

    def opened() -> Image.Image:
        return open_image(photo, LIMIT)

    def loaded() -> Image.Image:
        img = opened()
        if dct_scale(img.size, resize) > 1:
            img.draft(None, (MARGIN * resize, MARGIN * resize))
        img.load()
        return img

    reduced = loaded()
    upright = upright_rgb(reduced)
    scale, size = dct_scale(opened().size, resize), opened().size
    full = size if upright.size == reduced.size else (size[1], size[0])  # stored sideways: turned upright
    box = (0.0, 0.0, full[0] / scale, full[1] / scale)  # the part of the decoded pixels that is the image
    return {
        "header": opened,
        "decode (reduced)": loaded,
        "EXIF orientation + RGB": lambda: upright_rgb(reduced),
        "resize + crop + tensor": lambda: PRESET.to_uint8_reduced(upright, full, box),
        "the same, resizing the whole reduced image, as before": lambda: resize_whole_then_crop(upright, full, box),
    }


def resize_whole_then_crop(img: Image.Image, full: tuple[int, int], box: Box) -> Tensor:
    """How a reduced image was resized before: ``box`` of it (the ``full``-size image) whole, then the centre crop."""
    size = resized_size(full, PRESET.preprocessing.resize_size)
    resized = img.resize(size, Image.Resampling.BILINEAR, box=box)
    return F.pil_to_tensor(F.center_crop(resized, [PRESET.preprocessing.crop_size]))


def measure_class(photos: list[bytes], repeats: int) -> dict[str, float]:
    """Every step for every photo of a class: step -> the median over the photos of each one's median."""
    rows: dict[str, list[float]] = {}
    for photo in photos:
        for step, run in (body_steps(photo) | decode_steps(photo)).items():
            rows.setdefault(step, []).append(cpu_ms(run, repeats))
    return {step: statistics.median(values) for step, values in rows.items()}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", default=",".join(UPLOAD_CLASSES), help="upload classes (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=15, help="runs of each step per photo (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = get_args_parser().parse_args(argv)
    names = args.classes.split(",")
    photos = {name: upload_class(name) for name in names}
    results = {name: measure_class(photos[name], args.repeats) for name in names}
    sizes = {name: statistics.median(len(p) for p in photos[name]) / 1e6 for name in names}
    print("| step (CPU ms, median) | " + " | ".join(f"{n} ({sizes[n]:.2f} MB)" for n in names) + " |")
    print("|---|" + "---:|" * len(names))
    for step in results[names[0]]:
        print(f"| {step} | " + " | ".join(f"{results[n][step]:.2f}" for n in names) + " |")


if __name__ == "__main__":
    main()
