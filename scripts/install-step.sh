#!/usr/bin/env bash
# Install the pinned step-ca and step CLI into .tools/bin (git-ignored) with `go install`.
#
# Versions come from scripts/step-versions.env. A binary is rebuilt only when the module
# version recorded in it (`go version -m`) differs from the pin, so a second run is instant.
# Never vendors smallstep code: Go fetches the tagged modules through the module proxy.
#
# Usage: scripts/install-step.sh [--force]
# Env:   STEP_TOOLS_DIR  install directory (default: <repo>/.tools/bin)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=step-versions.env
source "${repo_root}/scripts/step-versions.env"
bin_dir="${STEP_TOOLS_DIR:-${repo_root}/.tools/bin}"
force=0
[[ "${1:-}" == "--force" ]] && force=1

if ! command -v go >/dev/null 2>&1; then
  echo "install-step: 'go' not found on PATH; install Go >= 1.25 to build step-ca and step" >&2
  exit 2
fi
mkdir -p "${bin_dir}"

# installed_version BINARY MODULE -> prints the module version the binary was built from
installed_version() {
  local binary="$1" module="$2"
  [[ -x "${binary}" ]] || return 0
  go version -m "${binary}" 2>/dev/null | awk -v m="${module}" '$1 == "mod" && $2 == m {print $3}'
}

# ensure NAME MODULE PACKAGE VERSION
ensure() {
  local name="$1" module="$2" package="$3" version="$4"
  local have
  have="$(installed_version "${bin_dir}/${name}" "${module}")"
  if [[ "${force}" -eq 0 && "${have}" == "${version}" ]]; then
    echo "install-step: ${name} ${version} already in ${bin_dir}"
    return 0
  fi
  echo "install-step: building ${name} ${version} (was: ${have:-none}) ..."
  local start=${SECONDS}
  GOBIN="${bin_dir}" CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -trimpath" \
    go install "${package}@${version}"
  echo "install-step: built ${name} ${version} in $((SECONDS - start))s"
}

total_start=${SECONDS}
ensure step-ca "${STEP_CA_MODULE}" "${STEP_CA_MODULE}/cmd/step-ca" "${STEP_CA_VERSION}"
ensure step "${STEP_CLI_MODULE}" "${STEP_CLI_MODULE}/cmd/step" "${STEP_CLI_VERSION}"
echo "install-step: done in $((SECONDS - total_start))s; binaries in ${bin_dir}"
