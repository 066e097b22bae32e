#!/usr/bin/env bash
# Builds the real Kubernetes control plane the tests run against, from the Go modules pinned in
# this directory's go.mod/go.sum (helm/go.mod for the Helm CLI, promtool/go.mod for Prometheus's
# rule tester):
#
#     tests/cluster/build.sh            # -> target/cluster/bin/{etcd,kube-apiserver,kube-controller-manager,kubectl,helm,promtool}
#
# and puts the Prometheus Operator's ServiceMonitor and PrometheusRule CRDs, from the module
# pinned in monitoring/go.mod, into target/cluster/monitoring-crds (the chart tests apply them
# before installing the chart's monitoring objects).
#
# Needs Go (1.24 or newer) and the Go module proxy; nothing else. The binaries, Go's module cache
# and its build cache live outside the clone, under $EPPS_CACHE_DIR (default
# ${XDG_CACHE_HOME:-~/.cache}/ecr-public-pull-secret-operator): the binaries in a directory named
# by the fingerprint of every input (Go's version, this script, the go.mod/go.sum pins), which
# target/cluster/bin then links to. Another clone, or the same one after `cargo clean`, finds
# them built (a second); changed pins build anew, warm from Go's own content-addressed caches.
# The two newest builds are kept. Prints how long the build took.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${CONTROL_PLANE_DIR:-$root/target/cluster}"
bin="$out/bin"
# $cache and the Go environment.
. "$here/go-env.sh"

if ! command -v go >/dev/null 2>&1; then
    echo "tests/cluster/build.sh: Go is not installed; the real-control-plane tests need it (Go 1.24+)" >&2
    exit 1
fi

mkdir -p "$cache/control-plane" "$out"
# One build at a time per cache (two clones' CI runs, or a test run beside `.ci/run`).
exec 9>"$cache/control-plane/.lock"
flock 9
# Pure-Go binaries: no C toolchain needed, and they run anywhere on this architecture.
export CGO_ENABLED=0

# The CRDs first: they are not binaries, so the fingerprint below does not cover them, and a
# cached module makes this instant. `go mod download` checks the module against go.sum.
monitoring="$out/monitoring-crds"
module=github.com/prometheus-operator/prometheus-operator
module_dir="$(cd "$here/monitoring" && go mod download "$module" && go list -m -f '{{.Dir}}' "$module")"
mkdir -p "$monitoring"
for kind in servicemonitors prometheusrules; do
    install -m 0644 "$module_dir/example/prometheus-operator-crd/monitoring.coreos.com_$kind.yaml" "$monitoring/"
done

fingerprint="$(
    {
        go version
        cat "$here/build.sh" "$here/go.mod" "$here/go.sum" "$here/cmd/etcd/main.go"
        cat "$here/helm/go.mod" "$here/helm/go.sum"
        cat "$here/promtool/go.mod" "$here/promtool/go.sum"
    } | sha256sum | cut -d' ' -f1
)"
built="$cache/control-plane/$fingerprint"
tools=(etcd kube-apiserver kube-controller-manager kubectl helm promtool)
link() {
    rm -rf "$bin"
    ln -s "$built/bin" "$bin"
    touch "$built" # most recently used: kept by the pruning below
    # Older builds but the newest other one go.
    ls -1dt "$cache"/control-plane/*/ | tail -n +3 | xargs -r rm -rf
}
complete=1
for t in "${tools[@]}"; do [ -x "$built/bin/$t" ] || complete=0; done
if [ "$complete" = 1 ]; then
    link
    echo "control plane up to date in $built/bin (target/cluster/bin links there)"
    exit 0
fi

rm -rf "$built.partial"
mkdir -p "$built.partial"
partial="$built.partial"
start=$(date +%s)
# The Kubernetes binaries report the pinned release as their version, as Kubernetes' own build
# sets it (hack/lib/version.sh); without it kube-apiserver's /version says v0.0.0-master, and
# `helm install` refuses a chart with a kubeVersion constraint.
kube_version="$(cd "$here" && go list -m -f '{{.Version}}' k8s.io/kubernetes)"
IFS=. read -r major minor _ <<< "${kube_version#v}"
version=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    version+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    version+=" -X $pkg.gitTreeState=clean"
done
# One `go build` for the four Kubernetes binaries, so shared packages compile once.
(cd "$here" && go build -trimpath -ldflags "-s -w$version" -o "$partial/bin/" tool ./cmd/etcd)
# Helm has its own module: its k8s.io client libraries are newer than the control plane's.
(cd "$here/helm" && go build -trimpath -ldflags "-s -w" -o "$partial/bin/" tool)
# Prometheus's promtool, to evaluate the chart's alert rules; without its service discovery
# plugins (cloud SDKs it never uses here), which Prometheus's own build tag leaves out.
(cd "$here/promtool" && go build -trimpath -tags remove_all_sd -ldflags "-s -w" -o "$partial/bin/" tool)
# Only a complete build takes the fingerprint's name.
rm -rf "$built"
mv "$partial" "$built"
link
echo "control plane built in $(( $(date +%s) - start )) s into $built/bin"
