#!/usr/bin/env bash
# Run the real image under the Kubernetes pod's security constraints and check that it serves.
#   bash scripts/pod_constraints_check.sh IMAGE WEIGHTS_DIR
# The pod (deploy/kubernetes/base/deployment.yaml) runs as uid 10001 with a read-only root filesystem,
# emptyDirs at /tmp and /var/cache/resnet50, no capabilities, no privilege escalation, the runtime's
# default seccomp profile and the weights volume mounted read-only. Here: docker run --read-only with a
# tmpfs for each emptyDir (exec allowed, as on an emptyDir: Docker's tmpfs default is noexec), --user
# 10001, --cap-drop ALL, --security-opt no-new-privileges (Docker's default seccomp profile applies),
# WEIGHTS_DIR (holding model.safetensors, readable by uid 10001) at /weights read-only, and the CPU
# overlay's settings (deploy/kubernetes/overlays/cpu/serve.env) and memory limit (3 GiB,
# deployment-cpu.yaml there). The container must become ready and answer POST /predict with a real JPEG:
# 200 with five predictions.
# Needs a running Docker engine and the project's .venv (scripts/test.sh makes it).
set -euo pipefail
cd "$(dirname "$0")/.."

[ $# = 2 ] || {
  echo "usage: bash scripts/pod_constraints_check.sh IMAGE WEIGHTS_DIR" >&2
  exit 2
}
image=$1
weights=$(cd "$2" && pwd)
fail() {
  echo "pod constraints check FAILED: $*" >&2
  exit 1
}
[ -f "$weights/model.safetensors" ] || fail "no model.safetensors in $weights"
# shellcheck disable=SC1091
. .venv/bin/activate

name="resnet50-pod-check-$$"
cleanup() {
  local rc=$?
  if [ "$rc" != 0 ]; then docker logs --tail 60 "$name" 2>&1 || true; fi
  docker rm -f "$name" >/dev/null 2>&1 || true
}
trap cleanup EXIT

docker run -d --name "$name" \
  --read-only \
  --tmpfs /tmp:rw,exec,size=1g,mode=1777 \
  --tmpfs /var/cache/resnet50:rw,exec,size=1g,mode=1777 \
  --memory 3g \
  --user 10001:10001 \
  --cap-drop ALL \
  --security-opt no-new-privileges \
  --volume "$weights:/weights:ro" \
  --env-file deploy/kubernetes/overlays/cpu/serve.env \
  --publish 127.0.0.1::8000 \
  "$image" python -m app >/dev/null
url="http://$(docker port "$name" 8000/tcp | head -n 1)"

python - "$url" "$name" <<'EOF_PY'
"""Wait for /health/ready (as the pod's startupProbe would, up to 10 minutes), then POST a real JPEG."""
import io, subprocess, sys, time
import httpx
from PIL import Image
from skimage import data

url, name = sys.argv[1:3]
deadline = time.monotonic() + 600
while True:
    try:
        if httpx.get(f"{url}/health/ready", timeout=5).status_code == 200:
            break
    except httpx.TransportError:
        pass
    state = subprocess.run(["docker", "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", name],
                           capture_output=True, text=True).stdout.split()
    if state[:1] != ["running"]:
        sys.exit(f"the container stopped before it was ready: {' '.join(state)}")
    if time.monotonic() > deadline:
        sys.exit("not ready within 10 minutes")
    time.sleep(2)
jpeg = io.BytesIO()
Image.fromarray(data.chelsea()).save(jpeg, format="JPEG", quality=90)
response = httpx.post(f"{url}/predict", files={"file": ("chelsea.jpg", jpeg.getvalue(), "image/jpeg")}, timeout=60)
ranks = [p["rank"] for p in response.json().get("predictions", [])] if response.status_code == 200 else []
if ranks != [1, 2, 3, 4, 5]:
    sys.exit(f"POST /predict answered {response.status_code}: {response.text[:300]}")
print(f"ready and serving under the pod's constraints: {response.json()['predictions'][0]}")
EOF_PY
[ "$(docker inspect -f '{{.Config.User}}' "$name")" = 10001:10001 ] || fail "not running as uid 10001"
echo "pod constraints check passed ($image)"
