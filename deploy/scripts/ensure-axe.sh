#!/usr/bin/env bash
# Fetches axe-core (the accessibility checker the browser tests run inside
# each page) from the npm registry: one pinned version, checked against its
# published integrity hash, unpacked to .cache/axe-core/ (ignored by git).
# Needs curl, sha512sum and tar; no Node installation.
set -euo pipefail

VERSION="4.14.1"
# The tarball's dist.integrity as the registry publishes it (`npm view axe-core@VERSION dist.integrity`).
INTEGRITY="sha512-FHfa+lmNjQZfJz1q8wKqIDwC6DExcHt/pkjNQb09a3NPjCKg2rhu5qb2S4r76ASyFNNtuFooJpZe37OgudVGtQ=="
DEST=".cache/axe-core/${VERSION}"

if [ -f "${DEST}/axe.min.js" ]; then
  exit 0
fi
REGISTRY="${npm_config_registry:-https://registry.npmjs.org}"
REGISTRY="${REGISTRY%/}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
curl -fsSL --retry 3 -o "$tmp/axe.tgz" "${REGISTRY}/axe-core/-/axe-core-${VERSION}.tgz"
want="${INTEGRITY#sha512-}"
got="$(openssl dgst -sha512 -binary "$tmp/axe.tgz" | base64 -w0)"
if [ "$got" != "$want" ]; then
  echo "axe-core ${VERSION}: integrity mismatch (got sha512-${got})" >&2
  exit 1
fi
mkdir -p "$DEST"
tar -xzf "$tmp/axe.tgz" -C "$tmp"
cp "$tmp/package/axe.min.js" "$tmp/package/LICENSE" "$DEST/"
echo "axe-core ${VERSION} in ${DEST}" >&2
