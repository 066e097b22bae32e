# The Go environment of the control plane's build, sourced by build.sh, by the `go` wrapper
# beside it and by .ci/run: the project's cache directory outside the clone ($cache), and Go's
# module and build caches in it, so that a second clone or run finds them warm.
cache="${EPPS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ecr-public-pull-secret-operator}"
# Never fetch a different Go toolchain or change the pins: go.sum is committed.
export GOTOOLCHAIN=local GOFLAGS=-mod=readonly
export GOCACHE="$cache/go/build" GOMODCACHE="$cache/go/mod"
