#!/usr/bin/env bash
# Install the pinned micromdm `scepclient` into .tools/bin (git-ignored) with `go install`, for the
# SCEP end-to-end tests (tests/e2e/test_scep.py): a real SCEP client enrolling through step-ca.
#
# The pin is in scripts/step-versions.env (SCEPCLIENT_MODULE, SCEPCLIENT_VERSION). The binary is
# rebuilt only when the module version recorded in it (`go version -m`) differs from the pin.
# Go fetches the tagged module through the module proxy; nothing is vendored.
#
# Usage: scripts/install-scepclient.sh [--force]
# Env:   SCEP_TOOLS_DIR  install directory (default: <repo>/.tools/bin; the tests look there too)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=step-versions.env
source "${repo_root}/scripts/step-versions.env"
bin_dir="${SCEP_TOOLS_DIR:-${repo_root}/.tools/bin}"
force=0
[[ "${1:-}" == "--force" ]] && force=1

if ! command -v go >/dev/null 2>&1; then
  echo "install-scepclient: 'go' not found on PATH; install Go to build scepclient" >&2
  exit 2
fi
mkdir -p "${bin_dir}"

binary="${bin_dir}/scepclient"
have=""
if [[ -x "${binary}" ]]; then
  have="$(go version -m "${binary}" 2>/dev/null \
    | awk -v m="${SCEPCLIENT_MODULE}" '$1 == "mod" && $2 == m {print $3}')"
fi
if [[ "${force}" -eq 0 && "${have}" == "${SCEPCLIENT_VERSION}" ]]; then
  echo "install-scepclient: scepclient ${SCEPCLIENT_VERSION} already in ${bin_dir}"
  exit 0
fi
echo "install-scepclient: building scepclient ${SCEPCLIENT_VERSION} (was: ${have:-none}) ..."
start=${SECONDS}
GOBIN="${bin_dir}" CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -trimpath" \
  go install "${SCEPCLIENT_MODULE}/cmd/scepclient@${SCEPCLIENT_VERSION}"
echo "install-scepclient: built scepclient ${SCEPCLIENT_VERSION} in $((SECONDS - start))s"
