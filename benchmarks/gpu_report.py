"""The GPU check's markdown report, from the JSON files the stages wrote.

python -m benchmarks.gpu_report --dir OUTDIR > OUTDIR/gpu_check.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

TARGETS = {"model_only_img_s": 15_000, "service_img_s": 3_000, "service_p99_ms": 100, "single_p50_ms": 10}


def load(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


def model_table(limit: dict[str, Any]) -> list[str]:
    points = [p for p in limit["points"] if "error" not in p]
    configs = list(dict.fromkeys((p["precision"], p["mode"]) for p in points))
    batches = sorted({p["batch"] for p in points})
    by_key = {(p["precision"], p["mode"], p["batch"]): p["images_per_s"] for p in points}
    lines = [
        "| batch | " + " | ".join(f"{prec} {mode}" for prec, mode in configs) + " |",
        "|---:|" + "---:|" * len(configs),
    ]
    for batch in batches:
        cells = [f"{by_key[(c[0], c[1], batch)]:,.0f}" if (c[0], c[1], batch) in by_key else "–" for c in configs]
        lines.append(f"| {batch} | " + " | ".join(cells) + " |")
    lines += [f"\n{p['precision']} {p['mode']}: FAILED: {p['error']}" for p in limit["points"] if "error" in p]
    return lines


def service_table(service: dict[str, Any]) -> list[str]:
    columns = ("decode", "clients", "img/s", "p50 ms", "p95 ms", "p99 ms", "errors", "mean batch", "decode ms")
    extra = ("queue ms", "batch ms", "loop cores", "server cores")
    lines = ["| " + " | ".join((*columns, *extra)) + " |", "|---|" + "---:|" * (len(columns) + len(extra) - 1)]
    for decode, run in service["runs"].items():
        for p in run["points"]:
            lines.append(
                f"| {decode} | {p['clients']} | {p['throughput']:,.0f} | {p['p50_ms']:.1f} | {p['p95_ms']:.1f} | "
                f"{p['p99_ms']:.1f} | {p['errors']} | {p['mean_batch_size']:.1f} | {p['decode_duration_ms']:.2f} | "
                f"{p['queue_wait_ms']:.2f} | {p['batch_duration_ms']:.2f} | "
                f"{p.get('loop_cores', float('nan')):.2f} | {p.get('server_cores', float('nan')):.1f} |"
            )
    return lines


def verdicts(limit: dict[str, Any] | None, services: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    best_model = max((p["images_per_s"] for p in (limit or {}).get("points", []) if "error" not in p), default=0.0)
    if limit:
        lines.append(target_line("model-only best", best_model, ">=", TARGETS["model_only_img_s"], "img/s"))
    for label, service in services.items():
        points = [p for run in service.get("runs", {}).values() for p in run["points"]]
        loaded = [p for p in points if p["clients"] > 1 and p["p99_ms"] <= TARGETS["service_p99_ms"]]
        if not points:
            continue
        best = max(loaded or [p for p in points if p["clients"] > 1], key=lambda p: p["throughput"])
        name = f"{label}: service best ({best['clients']} clients)"
        lines.append(target_line(name, best["throughput"], ">=", TARGETS["service_img_s"], "img/s"))
        lines.append(target_line("  its p99", best["p99_ms"], "<=", TARGETS["service_p99_ms"], "ms"))
        single = min(p["p50_ms"] for p in points if p["clients"] == 1)
        lines.append(target_line("  single-client p50 (500x375 JPEG)", single, "<=", TARGETS["single_p50_ms"], "ms"))
        if best_model:
            lines.append(f"  - service / model-only limit: {best['throughput'] / best_model:.2f}")
    return lines


def target_line(name: str, value: float, op: str, target: float, unit: str) -> str:
    met = value >= target if op == ">=" else value <= target
    return f"- {name}: {value:,.1f} {unit} (target {op} {target:,} {unit}): {'met' if met else 'MISSED'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, required=True, help="the GPU check's output folder")
    out = parser.parse_args().dir
    limit, agreement = load(out / "model_limit.json"), load(out / "decode_agreement.json")
    services = {}
    for path in sorted(out.glob("service*.json")):  # one file per gpu_service run
        service = load(path)
        instances, workers = service.get("instances", 1), service.get("workers", 1)
        label = f"{instances} server{'s' if instances > 1 else ''}"
        services[label + (f" of {workers} workers" if workers > 1 else "")] = service
    env = (out / "env.txt").read_text().strip() if (out / "env.txt").exists() else "unknown"
    lines = ["# GPU check", "", "```", env, "```", "", "## Targets", *verdicts(limit, services), ""]
    if limit:
        lines += [
            "## Model-only limit (img/s; uint8 on the device → probabilities on the host)",
            *model_table(limit),
            "",
        ]
    for label, service in services.items():
        title = f"## Service end to end, {label} on the GPU (JPEG uploads over HTTP, closed loop)"
        lines += [title, *service_table(service), ""]
    if agreement:
        overlaps = [p["top5_overlap"] for p in agreement["photos"]]
        lines += [
            "## GPU decode against CPU decode",
            f"{len(overlaps)} photos: top-5 overlap {sum(overlaps)}/{5 * len(overlaps)}, "
            f"top-1 equal {sum(p['top1_equal'] for p in agreement['photos'])}/{len(overlaps)}, "
            f"largest pixel difference {max(p['max_abs_pixel_diff'] for p in agreement['photos'])}",
            "",
        ]
    stages = out / "stages.txt"
    if stages.exists():
        lines += ["## Stages", "```", stages.read_text().strip(), "```"]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
