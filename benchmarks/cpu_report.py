"""The CPU benchmark's report: every round's figures, and the medians against the targets.

python -m benchmarks.cpu    # prints this report and writes the JSON it is made from
"""

from __future__ import annotations

from typing import Any

TARGETS = {
    "service_vs_model_limit": 0.85,  # at N clients, against the best batch size
    "single_client_overhead_ms": 15.0,  # p50 at 1 client minus the model's batch-1 time
    "p99_over_p50": 2.5,  # at N clients
    "onnx_vs_torch_service": 1.4,  # at N clients
    "cpu_efficiency": 0.85,  # the first target in CPU time, which other load on the machine barely moves
}
# Per upload class, the targets that differ from TARGETS: big photos cost more to receive and decode.
CLASS_TARGETS: dict[str, dict[str, float]] = {
    "0.2MP": {"service_vs_model_limit": 0.9},
    "2MP": {"service_vs_model_limit": 0.85},
    "12MP": {"service_vs_model_limit": 0.65, "single_client_overhead_ms": 25.0},
}


def report(results: dict[str, Any], clients: int) -> str:
    """The human-readable table, per round, and the medians against the targets."""
    lines = []
    for backend, r in results["backends"].items():
        tag = f"[{backend}]"
        limit = ", ".join(
            f"b{p['batch_size']}: {p['images_per_s']:.1f}/s ({p['median_ms']:.0f} ms)" for p in r["model_limit"]
        )
        lines.append(f"{tag} model-only limit: {limit}")
        for number, rnd in enumerate(r["rounds"], start=1):
            lines += _round_lines(tag, number, rnd)
        for name, value in r["median"].items():
            lines.append(f"{tag} median {name} = {value:.3f} (target {_target_text(name)})")
        for upload, medians in r.get("class_median", {}).items():
            for name, value in medians.items():
                target = _target_text(name, upload)
                lines.append(f"{tag} {upload} uploads: median {name} = {value:.3f} (target {target})")
    if "onnx_vs_torch_service" in results:
        ratio = results["onnx_vs_torch_service"]
        lines.append(
            f"onnxruntime / torch median service throughput at {clients} clients = {ratio:.3f} (target >= 1.4)"
        )
    return "\n".join(lines)


def _round_lines(tag: str, number: int, rnd: dict[str, Any]) -> list[str]:
    lines = [
        f"{tag} round {number}: model b1 {rnd['model_batch1_ms']:.1f} ms, "
        f"b{rnd['model_best_batch_size']} {rnd['model_best_images_per_s']:.1f}/s; CPU per image: model "
        f"{rnd['model_cpu_ms_per_image']:.1f} ms, service {rnd['service_cpu_ms_per_request']:.1f} ms; "
        f"load avg {rnd['load_average']:.2f}"
    ]
    lines += _load_lines(tag, rnd["service"])
    for upload, run in rnd.get("classes", {}).items():
        cpu_ms = run["service_cpu_ms_per_request"]
        lines.append(
            f"{tag}   {upload} multipart uploads: service CPU {cpu_ms:.1f} ms/request; beside it model b1 "
            f"{run['model_batch1_ms']:.1f} ms, {run['model_best_images_per_s']:.1f}/s"
        )
        lines += _load_lines(tag, run["service"])
    return lines


def _load_lines(tag: str, service: dict[str, dict[str, Any]]) -> list[str]:
    return [
        f"{tag}   {name:>9}: {s['throughput']:6.2f} req/s  p50 {s['p50_ms']:7.1f}  "
        f"p95 {s['p95_ms']:7.1f}  p99 {s['p99_ms']:7.1f} ms  errors {s['errors']}  "
        f"mean batch {s['mean_batch_size']:.2f}  generator {s.get('generator_cores') or 0.0:.2f} cores"
        for name, s in service.items()
    ]


def _target_text(name: str, upload: str | None = None) -> str:
    target = CLASS_TARGETS.get(upload or "", {}).get(name, TARGETS[name])
    return f"<= {target}" if name in ("single_client_overhead_ms", "p99_over_p50") else f">= {target}"
