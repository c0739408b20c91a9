#!/usr/bin/env bash
# Runs govulncheck against a Go vulnerability database built here, offline,
# from a pinned version of the module golang.org/x/vulndb: the module holds
# the OSV reports (data/osv/GO-*.json), and its command indexdb writes them
# in the layout govulncheck reads with -db file:///dir. Everything comes
# through the Go module proxy, checked against go.sum's checksum database,
# so the same versions give the same database and the same verdict.
#
# To take newer reports, set VULNDB_VERSION to a newer pseudo-version
# (go list -m golang.org/x/vulndb@latest) and run again.
set -euo pipefail
cd "$(dirname "$0")/../.."

VULNDB_VERSION="${VULNDB_VERSION:-v0.0.0-20261105234957-e22db6528018}"
GOVULNCHECK_VERSION="${GOVULNCHECK_VERSION:-v1.9.0}"
GO="${GO:-go}"
db="${VULNDB_DIR:-.cache/vulndb}/${VULNDB_VERSION}"

if [ ! -f "${db}/index/db.json" ]; then
	echo "building the vulnerability database from golang.org/x/vulndb@${VULNDB_VERSION}"
	tmp="$(mktemp -d)"
	trap 'rm -rf "${tmp}"' EXIT
	src="$(cd "${tmp}" && GOFLAGS=-mod=mod "${GO}" mod download -json "golang.org/x/vulndb@${VULNDB_VERSION}" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
	test -d "${src}/data/osv" || { echo "no data/osv in ${src}" >&2; exit 1; }
	(cd "${tmp}" && "${GO}" run "golang.org/x/vulndb/cmd/indexdb@${VULNDB_VERSION}" -vulns "${src}/data/osv" -out "${tmp}/db")
	mkdir -p "$(dirname "${db}")"
	rm -rf "${db}"
	mv "${tmp}/db" "${db}"
fi

echo "govulncheck ${GOVULNCHECK_VERSION} against golang.org/x/vulndb@${VULNDB_VERSION} ($(ls "${db}/ID" | grep -c "\.json$") reports), $("${GO}" version)"
exec "${GO}" run "golang.org/x/vuln/cmd/govulncheck@${GOVULNCHECK_VERSION}" -db "file://$(cd "${db}" && pwd)" ./...
