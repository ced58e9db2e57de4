"""Check a running compose stack from the host, through its published ports.

    python scripts/check_stack.py --api http://127.0.0.1:8000 --prometheus http://127.0.0.1:9090

It fails (exit 1, naming each problem) unless: POST /predict with a real JPEG answers 200 with five
ranked predictions; Prometheus scrapes the api (`up` is 1) and has loaded every alert in
docker/alerts.yml; every PromQL expression of the Grafana dashboard and the alert rules evaluates
without error; and, while a bounded trickle of requests runs, every dashboard panel that traffic
fills returns data. Only the given loopback URLs are contacted.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
from collections.abc import Callable
from io import BytesIO
from pathlib import Path

import httpx
from PIL import Image
from skimage import data as skdata

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "docker/grafana/dashboards/resnet50-serving.json"
ALERTS = ROOT / "docker/alerts.yml"
# Grafana fills these in before querying; Prometheus alone needs concrete durations.
GRAFANA_MACROS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}
# Panels that stay empty without a GPU (unless --gpu) or without overload; every other one must show data.
MAY_BE_EMPTY = {"Rejections by reason", "GPU memory"}
JPEG_QUALITY = 90


class StackError(AssertionError):
    """A check that did not hold; the message says what was expected and what came back."""


def chelsea_jpeg() -> bytes:
    """scikit-image's photograph of Chelsea the cat, JPEG-encoded."""
    buf = BytesIO()
    Image.fromarray(skdata.chelsea()).save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def check_predict(api: httpx.Client, jpeg: bytes) -> dict:
    """POST /predict must answer 200 with five ranked, descending predictions."""
    response = api.post("/predict", files={"file": ("chelsea.jpg", jpeg, "image/jpeg")})
    if response.status_code != 200:
        raise StackError(f"POST /predict answered {response.status_code}: {response.text[:300]}")
    body = response.json()
    predictions = body.get("predictions", [])
    ranks = [p.get("rank") for p in predictions]
    scores = [p.get("score") for p in predictions]
    if ranks != [1, 2, 3, 4, 5] or scores != sorted(scores, reverse=True):
        raise StackError(f"POST /predict: expected 5 ranked predictions, got {predictions}")
    if not response.headers.get("x-request-id"):
        raise StackError("POST /predict: no X-Request-ID header")
    return body


def query(prom: httpx.Client, expr: str) -> list[dict]:
    """An instant query; raises with Prometheus' own error when the expression does not evaluate."""
    for macro, value in GRAFANA_MACROS.items():
        expr = expr.replace(macro, value)
    body = prom.get("/api/v1/query", params={"query": expr}).json()
    if body.get("status") != "success":
        raise StackError(f"{expr!r}: {body.get('errorType')}: {body.get('error')}")
    return body["data"]["result"]


def wait_until(what: str, condition: Callable[[], bool], timeout_s: float, every_s: float = 3.0) -> None:
    """Poll until ``condition()`` holds; a StackError inside counts as 'not yet'."""
    deadline = time.monotonic() + timeout_s
    last_error = ""
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (StackError, httpx.HTTPError) as exc:
            last_error = f" (last: {exc})"
        time.sleep(every_s)
    raise StackError(f"timed out after {timeout_s:.0f}s waiting for {what}{last_error}")


def dashboard_targets() -> list[tuple[str, str]]:
    """(panel title, expr) for every query of every panel, rows included."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    panels += [child for panel in panels for child in panel.get("panels", [])]
    return [(p["title"], t["expr"]) for p in panels for t in p.get("targets", []) if t.get("expr")]


def loaded_rules(prom: httpx.Client) -> dict[str, dict]:
    """Alerting rules Prometheus has loaded, by name; each must exist in docker/alerts.yml."""
    groups = prom.get("/api/v1/rules").json()["data"]["groups"]
    rules = {rule["name"]: rule for group in groups for rule in group["rules"]}
    expected = set(re.findall(r"^\s*- alert: (\w+)", ALERTS.read_text(), flags=re.MULTILINE))
    if set(rules) != expected:
        raise StackError(f"Prometheus loaded alerts {sorted(rules)}, docker/alerts.yml has {sorted(expected)}")
    return rules


def rules_evaluated(prom: httpx.Client) -> bool:
    """True once every alert rule has been evaluated without error."""
    rules = loaded_rules(prom)
    broken = {name: rule.get("lastError") for name, rule in rules.items() if rule.get("health") == "err"}
    if broken:
        raise StackError(f"alert rules fail to evaluate: {broken}")
    return all(rule.get("health") == "ok" for rule in rules.values())


def traffic(api: httpx.Client, jpeg: bytes, stop: threading.Event, max_requests: int = 300) -> None:
    """A bounded trickle of predictions (about two a second), plus a bad upload now and then."""
    for i in range(max_requests):
        if stop.wait(0.5):
            return
        content = b"not an image" if i % 10 == 9 else jpeg
        api.post("/predict", files={"file": ("x.jpg", content, "image/jpeg")})


def missing_panels(prom: httpx.Client, may_be_empty: set[str]) -> list[str]:
    """Panels with a query that returns no series yet, or only NaN (no traffic in the window)."""
    missing = []
    for title, expr in dashboard_targets():
        if title in may_be_empty:
            continue
        values = [sample["value"][1] for sample in query(prom, expr)]
        if not values or all(v == "NaN" for v in values):
            missing.append(f"{title}: {expr}")
    return missing


def check_prometheus(prom: httpx.Client, timeout_s: float) -> None:
    """The api is scraped, every alert is loaded and evaluated, and every expression evaluates."""
    up = 'up{job="resnet50-serving"}'
    wait_until("Prometheus to scrape the api", lambda: [s["value"][1] for s in query(prom, up)] == ["1"], timeout_s)
    print(f"ok  Prometheus scrapes the api: {up} = 1")

    wait_until("every alert rule to evaluate", lambda: rules_evaluated(prom), timeout_s)
    rules = loaded_rules(prom)
    print(f"ok  alert rules loaded and evaluated: {', '.join(sorted(rules))}")

    expressions = [expr for _, expr in dashboard_targets()] + [rule["query"] for rule in rules.values()]
    for expr in expressions:
        query(prom, expr)
    print(f"ok  {len(expressions)} PromQL expressions (dashboard and alerts) evaluate without error")


def check_panels_fill(
    api: httpx.Client, prom: httpx.Client, jpeg: bytes, may_be_empty: set[str], timeout_s: float
) -> None:
    """While a trickle of requests runs, every panel outside ``may_be_empty`` returns data."""
    stop = threading.Event()
    sender = threading.Thread(target=traffic, args=(api, jpeg, stop), daemon=True)
    sender.start()
    try:
        wait_until("the dashboard panels to show data", lambda: not missing_panels(prom, may_be_empty), timeout_s, 5)
    except StackError as exc:
        raise StackError(f"{exc}; still empty: {missing_panels(prom, may_be_empty)}") from None
    finally:
        stop.set()
        sender.join()
    print(f"ok  dashboard panels return data after traffic (all but {', '.join(sorted(may_be_empty))})")


def run_checks(api_url: str, prometheus_url: str, timeout_s: float, gpu: bool) -> None:
    """Every check, in order; the first that fails raises StackError."""
    jpeg = chelsea_jpeg()
    may_be_empty = MAY_BE_EMPTY - {"GPU memory"} if gpu else MAY_BE_EMPTY
    with httpx.Client(base_url=api_url, timeout=60) as api, httpx.Client(base_url=prometheus_url, timeout=30) as prom:
        top = check_predict(api, jpeg)["predictions"][0]
        print(f"ok  POST /predict (chelsea.jpg): 200, top-1 {top['label']!r} {top['score']:.3f}")
        check_prometheus(prom, timeout_s)
        check_panels_fill(api, prom, jpeg, may_be_empty, timeout_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--api", required=True, help="the api's published URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--prometheus", required=True, help="Prometheus' published URL")
    parser.add_argument("--timeout", type=float, default=180, help="seconds to wait for each condition (default: 180)")
    parser.add_argument("--gpu", action="store_true", help="the api runs on CUDA: the GPU memory panel must fill too")
    args = parser.parse_args(argv)
    try:
        run_checks(args.api.rstrip("/"), args.prometheus.rstrip("/"), args.timeout, args.gpu)
    except (StackError, httpx.HTTPError) as exc:
        print(f"FAIL {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
