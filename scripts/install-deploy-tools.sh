#!/usr/bin/env bash
# Install the pinned checkers of the deployment kits into .tools/bin (git-ignored):
#   helm         `helm lint` and `helm template` for deploy/helm/
#   compose-spec the compose-spec loader and validator behind `docker compose config`, for deploy/compose/
# Versions come from scripts/deploy-tools.env. A binary is rebuilt only when the module version
# recorded in it (`go version -m`) differs from the pin, so a second run is instant.
#
# Usage: scripts/install-deploy-tools.sh [--force]
# Env:   DEPLOY_TOOLS_DIR  install directory (default: <repo>/.tools/bin)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=deploy-tools.env
source "${repo_root}/scripts/deploy-tools.env"
bin_dir="${DEPLOY_TOOLS_DIR:-${repo_root}/.tools/bin}"
force=0
[[ "${1:-}" == "--force" ]] && force=1

if ! command -v go >/dev/null 2>&1; then
  echo "install-deploy-tools: 'go' not found on PATH; install Go >= 1.26 to build helm" >&2
  exit 2
fi
mkdir -p "${bin_dir}"

installed_version() {
  local binary="$1" module="$2"
  [[ -x "${binary}" ]] || return 0
  go version -m "${binary}" 2>/dev/null | awk -v m="${module}" '$1 == "mod" && $2 == m {print $3}'
}

# ensure NAME MODULE PACKAGE VERSION [LDFLAGS]: `go install` into a scratch GOBIN, then move the
# binary to NAME (compose-go's command is a package called `cmd`).
ensure() {
  local name="$1" module="$2" package="$3" version="$4" ldflags="${5:-}"
  local have
  have="$(installed_version "${bin_dir}/${name}" "${module}")"
  if [[ "${force}" -eq 0 && "${have}" == "${version}" ]]; then
    echo "install-deploy-tools: ${name} ${version} already in ${bin_dir}"
    return 0
  fi
  echo "install-deploy-tools: building ${name} ${version} (was: ${have:-none}) ..."
  local start=${SECONDS} scratch
  scratch="$(mktemp -d)"
  GOBIN="${scratch}" CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -trimpath" \
    go install -ldflags "-s -w ${ldflags}" "${package}@${version}"
  mv "${scratch}/$(basename "${package}")" "${bin_dir}/${name}"
  rmdir "${scratch}"
  echo "install-deploy-tools: built ${name} ${version} in $((SECONDS - start))s"
}

# helm's Makefile stamps its version and the Kubernetes version it assumes (`helm template`
# renders for it; unstamped it would claim Kubernetes 1.20).
helm_ldflags="-X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}"
for pkg in pkg/chartutil pkg/lint/rules; do
  helm_ldflags+=" -X ${HELM_MODULE}/${pkg}.k8sVersionMajor=1 -X ${HELM_MODULE}/${pkg}.k8sVersionMinor=${HELM_K8S_MINOR}"
done

total_start=${SECONDS}
ensure helm "${HELM_MODULE}" "${HELM_MODULE}/cmd/helm" "${HELM_VERSION}" "${helm_ldflags}"
ensure compose-spec "${COMPOSE_GO_MODULE}" "${COMPOSE_GO_MODULE}/cmd" "${COMPOSE_GO_VERSION}"
echo "install-deploy-tools: done in $((SECONDS - total_start))s; binaries in ${bin_dir}"
