#!/bin/sh
# Start the service in the container. With no checkpoint at SERVE_MODEL_PATH, fetch torchvision's
# ImageNet ResNet-50 weights into it once (the weights volume keeps them); a checkpoint already
# there, mounted or trained, is served as is. `exec` hands this process to the server, so
# `docker stop` (SIGTERM) reaches it and it drains.
set -eu

model="${SERVE_MODEL_PATH:?the image sets it (Dockerfile)}"

if [ ! -e "$model" ]; then
  echo "no checkpoint at $model: fetching torchvision's ImageNet ResNet-50 weights (${WEIGHTS_VARIANT:-v2}) once" >&2
  if ! err=$(python -m model.fetch --out "$model" --variant "${WEIGHTS_VARIANT:-v2}" 2>&1 >/dev/null); then
    # model.fetch names the file and the failure; say how to provide weights from outside the container.
    reason=$(printf '%s\n' "$err" | tail -n 1 | sed 's/^error: //; s/; offline?.*//')
    echo "error: no checkpoint at $model and the download failed ($reason); let the api reach the internet once, or start it with WEIGHTS_SOURCE=/a/folder/holding/$(basename "$model") (docs/deployment.md, Weights)" >&2
    exit 1
  fi
  echo "saved $model" >&2
fi

exec python -m app "$@"
