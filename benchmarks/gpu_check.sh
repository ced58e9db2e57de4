#!/usr/bin/env bash
# The GPU check: gpu-marked tests, the model-only limit and the service under load, on one NVIDIA GPU.
#
#   bash benchmarks/gpu_check.sh OUTDIR
#
# Needs Python with torch/torchvision and CUDA; the web stack is installed from wheels in .whl/ when
# present (a GPU host without a package index; FastAPI needs opentelemetry-api among them). Every stage
# has its own time limit, so one hang cannot eat the rest; the limits add up to under 11 minutes.
# Results: OUTDIR/*.json, OUTDIR/gpu_check.md.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: gpu_check.sh OUTDIR}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
py=${PYTHON:-python3}

if compgen -G ".whl/*.whl" >/dev/null; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/gpu-check-site .whl/*.whl \
    && export PYTHONPATH=/tmp/gpu-check-site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-}

status=0
stage() {  # stage NAME SECONDS COMMAND...: run with a time limit, log to OUTDIR/NAME.log, remember failures
  local name=$1 limit=$2; shift 2
  echo "== $name (limit ${limit}s)"
  local begin=$SECONDS
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$out/$name.log"
  local rc=${PIPESTATUS[0]}
  echo "== $name: exit $rc after $((SECONDS - begin))s" | tee -a "$out/stages.txt"
  [ "$rc" -eq 0 ] || status=1
}

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  "$py" -c 'import torch, torchvision; print("torch", torch.__version__, "cuda", torch.version.cuda, "torchvision", torchvision.__version__)'
  nproc; } > "$out/env.txt" 2>&1
cat "$out/env.txt"

# The tests include a torch.compile training run, which alone takes over a minute on an H200.
stage tests 150 "$py" -m pytest -q -rfE --tb=short -m gpu -p no:cacheprovider -o addopts="" tests
stage model_limit 75 "$py" -m benchmarks.gpu_model_limit --out "$out/model_limit.json"
stage decode_agreement 30 "$py" -m benchmarks.gpu_decode_agreement --out "$out/decode_agreement.json"
stage service 120 "$py" -m benchmarks.gpu_service --seconds 4 --out "$out/service.json"
# One server process is bounded by its GIL well below the GPU; SERVE_WORKERS=4 shares the GPU among four.
stage service_workers 80 "$py" -m benchmarks.gpu_service --workers 4 --procs 8 --clients 64,128,256 --seconds 4 \
  --decodes gpu --out "$out/service_workers.json"
# Phone-photo uploads (0.2 / 2 / 12 MP, multipart), CPU and GPU decoding, and 12 MP all on nvJPEG (gpu-full: is
# GPU_DECODE_MAX_PIXELS where it should be?); synthetic photos: no scikit-image here.
stage uploads 160 "$py" -m benchmarks.gpu_uploads --clients 64 --seconds 3 --out "$out/uploads.json"
"$py" -m benchmarks.gpu_report --dir "$out" > "$out/gpu_check.md" && cat "$out/gpu_check.md"
exit $status
