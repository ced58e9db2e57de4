#!/usr/bin/env bash
# Build a Debian bookworm image with python3, its headers and venv from Debian's own packages, for
# machines that cannot pull python:3.11-slim-bookworm (which has the same). It plays the Dockerfile's
# BASE_IMAGE.
#   bash scripts/standin_base_image.sh [TAG]      (default TAG: resnet50-serving/base:bookworm)
# Skips the build when TAG already exists. Needs root, debootstrap and a running Docker engine.
set -euo pipefail

tag="${1:-resnet50-serving/base:bookworm}"
if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "stand-in base image $tag: present"
  exit 0
fi

# The machine's own mirror: the one apt already reaches from here.
mirror=$(sed -n 's/^URIs:[[:space:]]*\(http[^[:space:]]*debian\)[[:space:]]*$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)
mirror="${mirror:-http://deb.debian.org/debian}"

rootfs=$(mktemp -d)
log=$(mktemp)
trap 'rm -rf "$rootfs" "$log"' EXIT
echo "stand-in base image $tag: debootstrap bookworm from $mirror"
debootstrap --variant=minbase --include=python3,python3-dev,python3-venv,python3-pip,ca-certificates \
  bookworm "$rootfs" "$mirror" >"$log" 2>&1 || { tail -n 30 "$log" >&2; exit 1; }
# Trust what this machine trusts (a TLS-intercepting proxy's CA, where there is one).
cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | docker import --change 'CMD ["/bin/bash"]' - "$tag" >/dev/null
echo "stand-in base image $tag: built"
