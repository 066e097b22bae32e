// Pins the Prometheus Operator release whose CRDs (ServiceMonitor, PrometheusRule) the chart tests
// apply before installing the chart with its monitoring objects. Only the module's files are used
// (its example/prometheus-operator-crd/ directory); tests/cluster/build.sh downloads it with
// `go mod download`, checked against go.sum, and builds nothing from it.
module ecr-public-pull-secret-operator/tests/cluster/monitoring

go 1.24.0

require github.com/prometheus-operator/prometheus-operator v0.85.0
