"""Check model updates without downtime on a running compose stack, under load from the host.

    python scripts/check_model_update.py --api http://127.0.0.1:8000 --data-dir DIR \
        --train "--data-dir /data --epochs 1" \
        -- docker compose -f docker-compose.yml -f docker/compose.cpu.yml

The api must be up with SERVE_WATCH_MODEL=true and SERVE_ADMIN_KEY (read from this script's environment too),
without SERVE_API_KEY, serving the weights volume's model.safetensors. While a few clients send POST /predict back
to back, it:

1. runs the trainer profile with ``--train``'s arguments (DIR mounted at /data), as users train into the
   volume; the trainer keeps the model it replaces as model.prev.safetensors and renames its best one onto
   model.safetensors, and the api, watching that path, must switch to it (GET /model: version, last_reload ok);
2. calls POST /admin/reload from the host, through the published port, without the key: 401 ``unauthorized``;
   then from inside the container, on its loopback interface, without the key: 401 too (loopback is no identity);
3. rolls back from the host with the key: POST /admin/reload {"path": "model.prev.safetensors"} (a name inside
   the model directory) answers 200 and the api serves that model;
4. ``docker compose kill -s HUP api``: the signal must reach the server through the init, which reloads
   model.safetensors and serves the trained model again.

It fails (exit 1, naming the problem) unless, in addition: no request failed or was dropped the whole time,
every answer names one of these models and all its labels are that model's classes, no reload failed,
inference_model_info names only the final model, and the api logged the rollback and the SIGHUP reload.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx
from check_stack import StackError, chelsea_jpeg, wait_until
from prometheus_client.parser import text_string_to_metric_families

MODEL = "/weights/model.safetensors"
PREVIOUS = "/weights/model.prev.safetensors"

# Run inside the api container: each checkpoint named on the command line as one JSON line.
DESCRIBE = """
import json, sys
from model import load_checkpoint
for path in sys.argv[1:]:
    ckpt = load_checkpoint(path)
    print(json.dumps({"version": ckpt.version, "labels": list(ckpt.labels)}))
"""

# Run inside the api container: POST /admin/reload on its loopback interface, without a key; prints the status,
# then the body.
RELOAD_ON_LOOPBACK = """
import json, sys, urllib.error, urllib.request
body = json.dumps({"path": sys.argv[1]}).encode()
request = urllib.request.Request("http://127.0.0.1:8000/admin/reload", data=body,
                                 headers={"Content-Type": "application/json"})
try:
    with urllib.request.urlopen(request, timeout=600) as response:
        print(response.status, response.read().decode())
except urllib.error.HTTPError as exc:
    print(exc.code, exc.read().decode())
"""


@dataclass(frozen=True)
class Answer:
    status: int
    version: str = ""
    labels: tuple[str, ...] = ()  # the predictions' labels, best first
    text: str = ""


@dataclass
class ClosedLoop:
    """Clients that each send the next request as soon as the last one is answered, until stopped."""

    url: str
    jpeg: bytes
    clients: int = 3
    answers: list[Answer] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # requests without an answer: dropped connections, timeouts
    _stop: threading.Event = field(default_factory=threading.Event)

    @contextmanager
    def running(self) -> Iterator[ClosedLoop]:
        threads = [threading.Thread(target=self._client, daemon=True) for _ in range(self.clients)]
        for thread in threads:
            thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            for thread in threads:
                thread.join(timeout=90)

    def _client(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as client:
            while not self._stop.is_set():
                try:
                    r = client.post("/predict", files={"file": ("chelsea.jpg", self.jpeg, "image/jpeg")})
                except httpx.HTTPError as exc:
                    self.errors.append(repr(exc))
                    continue
                if r.status_code != 200:
                    self.answers.append(Answer(r.status_code, text=r.text[:300]))
                    continue
                body = r.json()
                labels = tuple(p["label"] for p in body["predictions"])
                self.answers.append(Answer(200, body["model"]["version"], labels))


@dataclass(frozen=True)
class Compose:
    """The stack's ``docker compose`` command line (files included), and the trainer's dataset folder."""

    argv: list[str]
    data_dir: str

    def run(self, *args: str, show: bool = False, timeout_s: float = 900) -> str:
        """Run a compose subcommand; its stdout. ``show``: let its output through to the console instead."""
        env = {**os.environ, "DATA_DIR": self.data_dir}
        out = None if show else subprocess.PIPE
        result = subprocess.run([*self.argv, *args], stdout=out, stderr=out, text=True, env=env, timeout=timeout_s)
        if result.returncode != 0:
            said = f": {result.stderr.strip()[-500:]}" if result.stderr else " (its output is above)"
            raise StackError(f"docker compose {shlex.join(args)[:200]} exited {result.returncode}{said}")
        return result.stdout or ""

    def python_in_api(self, code: str, *args: str) -> str:
        return self.run("exec", "-T", "api", "python", "-c", code, *args)

    def describe(self, *paths: str) -> list[dict]:
        """Version and labels of each checkpoint, read in the api container."""
        lines = self.python_in_api(DESCRIBE, *paths).splitlines()
        described = [json.loads(line) for line in lines if line.startswith("{")]
        if len(described) != len(paths):
            raise StackError(f"expected {', '.join(paths)} in the weights volume, read {described}")
        return described


def serving(api: httpx.Client) -> dict:
    response = api.get("/model")
    if response.status_code != 200:
        raise StackError(f"GET /model answered {response.status_code}: {response.text[:300]}")
    info: dict = response.json()
    return info


def wait_for_model(api: httpx.Client, version: str, what: str, timeout_s: float) -> None:
    """Until GET /model serves ``version`` after a successful reload to it."""

    def switched() -> bool:
        info = serving(api)
        last = info.get("last_reload") or {}
        return info["version"] == version and last.get("result") == "ok" and last["current"]["version"] == version

    wait_until(what, switched, timeout_s, every_s=0.5)


def reload_counts(api: httpx.Client) -> dict[str, float]:
    counts = {"ok": 0.0, "failed": 0.0}
    for family in text_string_to_metric_families(api.get("/metrics").text):
        for sample in family.samples:
            if sample.name == "inference_model_reloads_total":
                counts[sample.labels["result"]] += sample.value
    return counts


def model_info_versions(api: httpx.Client) -> set[str]:
    families = text_string_to_metric_families(api.get("/metrics").text)
    return {s.labels["version"] for f in families for s in f.samples if s.name == "inference_model_info"}


def train_on(api: httpx.Client, compose: Compose, train_args: list[str], before: str, timeout_s: float) -> list[dict]:
    """Step 1: the trainer writes a better model into the volume; the watching api must switch to it.
    Returns the descriptions of model.safetensors and model.prev.safetensors."""
    compose.run("--profile", "train", "run", "--rm", "trainer", *train_args, show=True, timeout_s=timeout_s)
    new, prev = written = compose.describe(MODEL, PREVIOUS)
    if new["version"] == before:
        raise StackError(f"the trainer left {MODEL} as it was: no epoch beat the run's best validation top-1")
    wait_for_model(api, new["version"], f"the watching api to switch to the trained model {new['version']}", timeout_s)
    print(
        f"ok  the trainer wrote {new['version']} (kept {prev['version']} as model.prev.safetensors); the api serves it"
    )
    return written


def refused_without_the_key(api: httpx.Client, compose: Compose) -> None:
    """Step 2: without the admin key, neither the host nor the container's own loopback interface reloads."""
    response = api.post("/admin/reload", json={})
    if response.status_code != 401 or '"unauthorized"' not in response.text:
        raise StackError(f"POST /admin/reload from the host without the key: expected 401, got {response.status_code}")
    status = compose.python_in_api(RELOAD_ON_LOOPBACK, PREVIOUS).strip().partition(" ")[0]
    if status != "401":
        raise StackError(f"POST /admin/reload on the container's loopback without the key: expected 401, got {status}")
    print("ok  POST /admin/reload without the key: 401 from the host and from the container's loopback")


def roll_back(api: httpx.Client, previous: str) -> None:
    """Step 3: POST /admin/reload from the host with the key, to model.prev.safetensors."""
    headers = {"Authorization": f"Bearer {os.environ['SERVE_ADMIN_KEY']}"}
    response = api.post("/admin/reload", json={"path": os.path.basename(PREVIOUS)}, headers=headers, timeout=600)
    if response.status_code != 200 or response.json()["current"]["version"] != previous:
        raise StackError(f"rollback to {PREVIOUS}: expected 200 serving {previous}, got {response.text[:300]}")
    if serving(api)["version"] != previous:
        raise StackError(f"after the rollback GET /model still names {serving(api)['version']}")
    print(f"ok  rollback from the host with the admin key: 200, serving {previous}")


def hang_up(api: httpx.Client, compose: Compose, trained: str, timeout_s: float) -> None:
    """Step 4: SIGHUP through ``docker compose kill`` reloads SERVE_MODEL_PATH."""
    compose.run("kill", "-s", "HUP", "api")
    wait_for_model(api, trained, f"SIGHUP to reload {MODEL} ({trained})", timeout_s)
    print(f"ok  docker compose kill -s HUP api: the server reloaded {MODEL}, serving {trained}")


def check_answers(load: ClosedLoop, classes: dict[str, set[str]]) -> None:
    """No request lost; every answer from a known model, with that model's labels; every model answered."""
    if load.errors:
        raise StackError(f"{len(load.errors)} requests got no answer, e.g. {load.errors[:3]}")
    failed = [a for a in load.answers if a.status != 200]
    if failed:
        raise StackError(f"{len(failed)} of {len(load.answers)} requests failed, e.g. {failed[:3]}")
    strangers = [a for a in load.answers if a.version not in classes or not set(a.labels) <= classes[a.version]]
    if strangers:
        raise StackError(f"answers from an unknown model or with another model's labels, e.g. {strangers[:3]}")
    silent = set(classes) - {a.version for a in load.answers}
    if silent:
        raise StackError(f"no answer named {sorted(silent)}, though each served for a while")
    print(f"ok  {len(load.answers)} requests under load, none failed or dropped; each answer's labels are its model's")


def check_records(api: httpx.Client, compose: Compose, counts: dict[str, float], trained: str, previous: str) -> None:
    """Metrics and logs say what happened."""
    now = reload_counts(api)
    if now["failed"] != counts["failed"] or now["ok"] - counts["ok"] < 3:
        raise StackError(f"inference_model_reloads_total went from {counts} to {now}: expected 3 ok or more, 0 failed")
    if model_info_versions(api) != {trained}:
        raise StackError(f"inference_model_info names {model_info_versions(api)}, expected only {trained}")
    lines = compose.run("logs", "--no-color", "--no-log-prefix", "api").splitlines()
    messages = [json.loads(line).get("message", "") for line in lines if line.startswith("{")]
    for expected in (f"reloaded {trained} -> {previous} in", f"reloaded {previous} -> {trained} in"):
        if not any(m.startswith(expected) for m in messages):
            raise StackError(f"no log line starting {expected!r}")
    print(f"ok  reloads counted ({now}), inference_model_info switched, the api logged each reload")


def run_checks(api_url: str, compose: Compose, train_args: list[str], timeout_s: float) -> None:
    """Every step, in order, under load; the first that fails raises StackError."""
    with httpx.Client(base_url=api_url, timeout=60) as api:
        (first,) = compose.describe(MODEL)
        if serving(api)["version"] != first["version"]:
            raise StackError(f"the api does not serve {MODEL} ({first['version']})")
        counts = reload_counts(api)
        with ClosedLoop(api_url, chelsea_jpeg()).running() as load:
            time.sleep(2)
            trained, prev = train_on(api, compose, train_args, first["version"], timeout_s)
            refused_without_the_key(api, compose)
            roll_back(api, prev["version"])
            hang_up(api, compose, trained["version"], timeout_s)
            time.sleep(2)
        classes = {m["version"]: set(m["labels"]) for m in (first, prev, trained)}
        check_answers(load, classes)
        check_records(api, compose, counts, trained["version"], prev["version"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--api", required=True, help="the api's published URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--data-dir", required=True, help="the trainer's dataset on the host (DATA_DIR)")
    parser.add_argument("--train", required=True, help="the trainer's arguments, one string")
    parser.add_argument("--timeout", type=float, default=900, help="seconds for the trainer and each switch")
    parser.add_argument("compose", nargs="+", help="after --: the docker compose command, with its -f files")
    args = parser.parse_args(argv)
    compose = Compose(args.compose, args.data_dir)
    try:
        run_checks(args.api.rstrip("/"), compose, shlex.split(args.train), args.timeout)
    except (StackError, httpx.HTTPError, subprocess.TimeoutExpired) as exc:
        print(f"FAIL {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
