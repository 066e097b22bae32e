# syntax=docker/dockerfile:1
#
# The image packages the release binary built outside it (as kube-rs's controller-rs does), so
# the file CI builds is the file users build:
#
#   cargo build --release --locked
#   docker build -t ecr-public-pull-secret-operator:0.1.0 .
#
# CI builds it with buildah instead (`.ci/image`, no daemon needed) and runs the binary inside it.
#
# The base is a build argument so a mirror or a pinned digest can be used:
#   docker build --build-arg RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot@sha256:... .
# The binary links glibc and libgcc_s dynamically, which the distroless "cc" image provides: build
# it where glibc is no newer than the base's (Debian 12's 2.36 here; a Debian 12 machine or the
# rust:1.95-bookworm image), or the binary will not start in the image.

ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUNTIME_IMAGE}
LABEL org.opencontainers.image.title="ecr-public-pull-secret-operator" \
      org.opencontainers.image.description="Keeps Amazon ECR Public image pull Secrets fresh" \
      org.opencontainers.image.source="https://github.com/ecr-public-pull-secret-operator/ecr-public-pull-secret-operator" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY target/release/ecr-public-pull-secret-operator /usr/local/bin/ecr-public-pull-secret-operator
# distroless "nonroot" is uid/gid 65532; stated here too so the image is non-root whatever the base.
USER 65532:65532
# /metrics, /livez and /readyz (HTTP_ADDR).
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/ecr-public-pull-secret-operator"]
