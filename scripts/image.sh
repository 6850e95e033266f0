#!/usr/bin/env bash
# Builds the container image from a static binary built on this machine (the Dockerfile's
# `prebuilt` target), without pulling any base image: the image is `FROM scratch`.
#
#   scripts/image.sh [TAG]          default tag: anycable-rs:dev
#
# `docker build -t anycable-rs .` builds the same image from source instead (it pulls the rust
# image for the build stage).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TAG="${1:-anycable-rs:dev}"

BIN=$(scripts/static-build.sh)
mkdir -p dist
strip -o dist/anycable-rs "$BIN"
cp /etc/ssl/certs/ca-certificates.crt dist/ca-certificates.crt
docker build --target prebuilt -t "$TAG" . >&2
echo "$TAG"
