#!/usr/bin/env bash
# Builds the Tidings image (deploy/image/Dockerfile) with the first container
# builder that works here: docker (with a running engine), podman or
# buildah. With none, it says so and fails: no image is pretended.
#
#   deploy/image/build.sh [IMAGE]      (default tidings:dev; make image IMAGE=...)
set -euo pipefail
cd "$(dirname "$0")/../.."

image=${1:-tidings:dev}
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
# Timestamps in the image come from the last commit, so two builds of one
# commit give the same layers (BuildKit and buildah honour SOURCE_DATE_EPOCH).
epoch=$(git log -1 --format=%ct 2>/dev/null || echo 0)
args=(--file deploy/image/Dockerfile --tag "$image" --build-arg "REVISION=$revision" --build-arg "SOURCE_DATE_EPOCH=$epoch")

if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  echo "building $image with docker" >&2
  exec env DOCKER_BUILDKIT=1 SOURCE_DATE_EPOCH="$epoch" docker build "${args[@]}" .
fi
if command -v podman >/dev/null 2>&1 && podman info >/dev/null 2>&1; then
  echo "building $image with podman" >&2
  exec podman build --timestamp "$epoch" "${args[@]}" .
fi
if command -v buildah >/dev/null 2>&1; then
  echo "building $image with buildah" >&2
  exec buildah build --timestamp "$epoch" "${args[@]}" .
fi

why="no docker, podman or buildah found"
if command -v docker >/dev/null 2>&1; then
  why="the docker client is installed but no Docker engine answers (docker info fails); no podman or buildah"
fi
echo "make image: no container builder exists on this machine ($why)." >&2
echo "Nothing was built. Install podman or buildah, or run on a machine with a Docker engine." >&2
exit 1
