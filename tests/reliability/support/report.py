"""The figures of a run as Markdown, and their place in docs/reliability.md (between two markers, so the
prose around them is kept)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

BEGIN = "<!-- figures: written by `python -m tests.reliability.support --full`; do not edit by hand -->"
END = "<!-- end of figures -->"


def _counts(outcomes: dict[str, int]) -> str:
    return ", ".join(f"{key}: {n}" for key, n in sorted(outcomes.items(), key=lambda kv: -kv[1]))


def _yes(value: bool) -> str:
    return "yes" if value else "**no**"


def bad_input(r: dict[str, Any]) -> list[str]:
    bad = r["bad_input"]
    corpus_failed = [o["case"] + " → " + o["answer"] for o in bad["corpus"] if not o["passed"]]
    slowest = max(o["elapsed_ms"] for o in bad["corpus"])
    rows = [
        "| suite | cases | answers | failures | slowest case |",
        "|---|---|---|---|---|",
        f"| named cases (every docs/design.md §3 error, exotic images, framing) | {len(bad['corpus'])} | "
        f"{len(bad['corpus']) - len(corpus_failed)} as expected | {', '.join(corpus_failed) or 'none'} | "
        f"{slowest:.0f} ms |",
    ]
    for key, label in (
        ("decode", "decode path, in process (Hypothesis)"),
        ("http", "HTTP layer, real server (Hypothesis)"),
    ):
        fuzz = bad[key]
        rows.append(
            f"| {label} | {fuzz['cases']} | {_counts(fuzz['outcomes'])} | {fuzz['failure'] or 'none'} | "
            f"{fuzz['slowest_ms']:.0f} ms |"
        )
    rss, fds = bad["server_rss_mib"], bad["server_fds"]
    return [
        *rows,
        "",
        f"Server after all of it: ready {_yes(bad['ready_after'])}, tracebacks logged {len(bad['tracebacks'])}, "
        f"resident memory {rss[0]:.0f} → {rss[1]:.0f} MiB, open descriptors {fds[0]} → {fds[1]}. "
        f"Peak memory growth of the in-process decode fuzzing: {bad['decode_peak_rss_growth_mib']:.0f} MiB.",
        f"The server ran under the pickle guard for {r['requests_under_guard']} requests: unpickling calls "
        f"{len(r['unpickled_while_serving'])}.",
    ]


def doors(r: dict[str, Any]) -> list[str]:
    rows = ["| probe | answer | time | server memory | slowest /health/live meanwhile |", "|---|---|---|---|---|"]
    for p in r["probes"]:
        health = "" if p["health_worst_ms"] is None else f"{p['health_worst_ms']:.0f} ms"
        rows.append(
            f"| {p['name']} | {p['status']} | {p['seconds'] * 1000:.0f} ms | {p['rss_growth_mib']:+.0f} MiB "
            f"| {health} |"
        )
    fuzz = r["fuzz"]
    ids = [
        f"`{line['request_id']}` (the client's, escaped: {len(str(line['client_request_id']))} characters)"
        for line in r["logged_ids"]
    ]
    return [
        *rows,
        "",
        f"After the reload probes: the FIFO held open by nobody: {_yes(r['fifo_closed'])}; SIGTERM: exit "
        f"{r['exit_code']} in {r['exit_s']:.1f} s. gRPC ids with a newline and of 5 MB logged as {' and '.join(ids)}.",
        "",
        "| fuzzing (Hypothesis, real server) | cases | answers | failures | slowest case |",
        "|---|---|---|---|---|",
        *(
            f"| {f['target']} | {f['cases']} | {_counts(f['outcomes'])} | {f['failure'] or 'none'} | "
            f"{f['slowest_ms']:.0f} ms |"
            for f in (fuzz["rest"], fuzz["grpc"])
        ),
        "",
        f"`/health/live` meanwhile: {fuzz['health_samples']} answers, the slowest "
        f"**{fuzz['health_worst_ms']:.0f} ms**; "
        f"the same request answered identically before and after: {_yes(fuzz['same_answer_after'])}; ready after: "
        f"{_yes(fuzz['ready_after'])}; tracebacks logged: {len(r['tracebacks'])}.",
    ]


def overload(r: dict[str, Any]) -> list[str]:
    recovered = r["recovered_after_s"]
    others = {k: v for k, v in r["answers"].items() if k not in ("200 ok", "503 overloaded")}
    return [
        f"Capacity (closed loop, 16 clients): **{r['capacity_rps']:.1f} req/s**. Burst: open loop at "
        f"{r['offered_rps']:.1f} req/s (4x) for {r['duration_s']:.0f} s, {sum(r['answers'].values())} requests.",
        "",
        "| answer | count | p50 | p99 | max |",
        "|---|---|---|---|---|",
        f"| 200 (accepted) | {r['answers'].get('200 ok', 0)} | {r['served_p50_ms']:.0f} ms | "
        f"{r['served_p99_ms']:.0f} ms | {r['served_max_ms']:.0f} ms (deadline {r['deadline_s'] * 1000:.0f} ms) |",
        f"| 503 overloaded | {r['answers'].get('503 overloaded', 0)} | {r['shed_p50_ms']:.1f} ms | "
        f"**{r['shed_p99_ms']:.1f} ms** (server-side {r['shed_server_p99_ms']:.1f} ms) | |",
        "",
        f"Other answers: {_counts(others) or 'none'}. "
        f"Answered by the server but lost: {len(r['lost'])}. After the burst the queue emptied in "
        f"{r['drained_after_s']:.1f} s; the next light-load window (25% of capacity) had a median of "
        f"{r['recovered_p50_ms']:.0f} ms against {r['baseline_p50_ms']:.0f} ms before the burst"
        + (f", {recovered:.1f} s later." if recovered is not None else " (**not recovered**)."),
    ]


def disconnects(r: dict[str, Any]) -> list[str]:
    return [
        f"{r['rounds']} rounds of {r['per_round']} requests queued in one batch, {r['dropped_per_round']} of each "
        f"hanging up while queued; then {r['mid_upload']} clients hanging up half-way through their upload, and "
        "clients stalling half-way through theirs.",
        "",
        f"- images the model ran: **{r['model_images']:.0f}** (expected {r['expected_model_images']}: the clients that "
        f"stayed, and one request sent while uploads stalled); the answers of those that stayed: "
        f"{_counts({str(k): v for k, v in r['answered'].items()})}",
        f'- counted `inference_rejections_total{{reason="disconnected"}}`: {r["counted_disconnects"]:.0f}; '
        f"mid-upload hang-ups logged as 499: {r['counted_mid_upload']:.0f}",
        f"- {sum(r['stalled_answers'].values())} uploads stalled half-way: answered "
        f"{_counts({str(k): v for k, v in r['stalled_answers'].items()})} by {r['stalled_answered_after_s']:.1f} s "
        f"(deadline 6 s), holding no place: a normal request sent meanwhile got {r['served_while_stalled']}",
        f"- after the first round → the end: open descriptors {r['fds'][0]} → {r['fds'][1]}, threads "
        f"{r['threads'][0]} → {r['threads'][1]}, resident memory {r['rss_mib'][0]:.0f} → {r['rss_mib'][1]:.0f} MiB",
    ]


def shutdown(r: dict[str, Any]) -> list[str]:
    return [
        f"Open loop at {r['rate_rps']:.1f} req/s (2x capacity), SIGTERM half-way. Answers: {_counts(r['answers'])}.",
        f"Sent after the signal: {_counts(r['answered_after_signal'])}. Admitted after a client had seen "
        f"`not_ready`: {r['admitted_after_refusal']}. Answered 200 by the server but lost: {len(r['lost'])}; "
        f"transport errors for requests the server had logged: {len(r['unanswered_but_logged'])}.",
        f"Exit code {r['exit_code']}, {r['exit_s']:.1f} s after SIGTERM (grace period {r['grace_s']:.0f} s). "
        "(`0 …` answers are connections refused or closed once the drained server stopped listening.)",
    ]


def soak(r: dict[str, Any]) -> list[str]:
    samples = r["samples"]
    settled = [s for s in samples if s["at_s"] >= r["warmup_s"]]
    first, last = settled[0], settled[-1]
    return [
        f"Open loop at {r['rate_rps']:.1f} req/s (70% of capacity) for {r['duration_s']:.0f} s: "
        f"{_counts(r['answers'])}; errors **{sum(n for k, n in r['answers'].items() if k != '200 ok')}**, "
        f"lost {len(r['lost'])}. Latency p50 {r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms; p99 by tenth of the run: "
        + ", ".join(f"{v:.0f}" for v in r["window_p99_ms"])
        + " ms.",
        f"After {r['warmup_s']:.0f} s of warm-up: resident memory {first['rss_mib']:.1f} → {last['rss_mib']:.1f} MiB "
        f"(growth, last fifth minus first fifth: **{_growth(settled, 'rss_mib'):+.1f} MiB**), open descriptors "
        f"{first['fds']} → {last['fds']} ({_growth(settled, 'fds'):+.1f}; other than sockets "
        f"{_growth(settled, 'files'):+.1f}), threads {first['threads']} → {last['threads']}; descriptors with the "
        f"server idle before and after the load: {r['idle_fds'][0]} → {r['idle_fds'][1]}.",
    ]


def _growth(settled: list[dict[str, float]], key: str) -> float:
    fifth = max(len(settled) // 5, 1)
    head = sum(s[key] for s in settled[:fifth]) / fifth
    tail = sum(s[key] for s in settled[-fifth:]) / fifth
    return tail - head


def faults(r: dict[str, Any]) -> list[str]:
    rows = ["| weights | exit | error lines | names the file | traceback | unpickled |", "|---|---|---|---|---|---|"]
    for s in r["weights"]:
        rows.append(
            f"| {s['name']} | {s['exit_code']} | {len(s['error_lines'])} | {_yes(s['names_the_file'])} | "
            f"{'**yes**' if s['traceback'] else 'no'} | {len(s['unpickled'])} |"
        )
    f = r["forward"]
    exact = f["answered"].get("500", 0) == f["images_in_failed_batches"]
    return [
        *rows,
        "",
        f"Pickle marker file created (it would be, by any unpickling): {'**yes**' if r['marker_created'] else 'no'}.",
        f"Forward pass failing every 3rd batch, 16 clients: {f['batches']} batches, {f['failed_batches']} failed "
        f"holding {f['images_in_failed_batches']} images; answers {_counts(f['answered'])} "
        f"(500s exactly for the failed batches' images: {_yes(exact)}); "
        f"bare `internal server error` bodies: {_yes(f['bare_500s'])}; tracebacks logged {f['logged_tracebacks']}; "
        f"next request after the faults: {f['next_status']}.",
    ]


def training(r: dict[str, Any]) -> list[str]:
    lines = []
    for k in r["write_kills"]:
        lines.append(
            f"- SIGKILL with {k['bytes_written_at_kill'] / 2**20:.0f} MiB of the new `last.ckpt` written: the previous "
            f"one still loads (epoch {k['previous_state_epoch']}); `--resume auto` gives the uninterrupted result: "
            f"{_yes(k['resumed_matches'])}; temporary files left: {len(k['temp_files_after_resume'])}"
        )
    lines.append(
        f"- SIGKILL mid-epoch (at `{r['killed_at'].split(' loss')[0]}`), then `--resume auto`: same metrics and "
        f"bit-identical weights as the uninterrupted run: {_yes(r['resumed_after_epoch_kill_matches'])}"
    )
    return lines


def access(r: dict[str, Any], auth: list[Any]) -> list[str]:
    lines = []
    if auth:
        wrong = [c["name"] for c, status in auth if status != c["expect"]]
        lines.append(
            f"API key: {len(auth)} cases over real HTTP (missing, empty, wrong scheme, prefix, suffix, other header, "
            f"query string, case of `Bearer`, open endpoints): as expected {len(auth) - len(wrong)}, "
            f"otherwise {', '.join(wrong) or 'none'}."
        )
    lines += [
        f"Container user: `USER {r['dockerfile_user']}` in the final stage; compose overrides: "
        f"{', '.join(r['compose_users']) or 'none'}.",
        "",
        "| package | floor | advisories checked (first fixed version) | below a fix |",
        "|---|---|---|---|",
    ]
    for floor in r["floors"]:
        fixes = ", ".join(f"{advisory} ({fixed})" for fixed, advisory, _ in floor["fixes"])
        lines.append(f"| {floor['package']} | {floor['floor']} | {fixes} | {', '.join(floor['below']) or 'none'} |")
    return lines


SECTIONS: list[tuple[str, str, Callable[..., list[str]]]] = [
    ("Bad input", "bad_input", bad_input),
    ("The doors: admin reload and the Open Inference Protocol", "doors", doors),
    ("Overload", "overload", overload),
    ("Deadlines and disconnects", "disconnects", disconnects),
    ("Graceful shutdown under load", "shutdown", shutdown),
    ("Soak", "soak", soak),
    ("Faults", "faults", faults),
    ("Training faults", "training", training),
]


def render(results: dict[str, Any]) -> str:
    """The whole figures block."""
    out = [BEGIN, "", results["header"], ""]
    for title, key, write in SECTIONS:
        if key in results:
            out += [f"### {title}", "", *write(results[key]), ""]
    if "static" in results:
        auth = results.get("bad_input", {}).get("auth", [])
        out += ["### Access", "", *access(results["static"], auth), ""]
    return "\n".join([*out, END]) + "\n"


def write_into(doc: Path, block: str) -> None:
    """Replace the figures block of ``doc`` (or append one)."""
    text = doc.read_text() if doc.exists() else ""
    if BEGIN in text and END in text:
        before, _, rest = text.partition(BEGIN)
        _, _, after = rest.partition(END + "\n")
        text = before + block + after
    else:
        text += ("\n" if text else "") + block
    doc.write_text(text)
