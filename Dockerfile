# syntax=docker/dockerfile:1
#
# docker build -t ecr-public-pull-secret-operator:0.1.0 .
#
# Both base images are build arguments so a mirror or a pinned digest can be used:
#   docker build --build-arg RUST_IMAGE=rust:1.95-bookworm@sha256:... \
#                --build-arg RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot@sha256:... .
# The two must share a glibc: the binary links glibc and libgcc_s dynamically, which the distroless
# "cc" image provides (Debian 12, like the bookworm build image).

ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS build
WORKDIR /src

# Dependency layer: the manifests, the lock file and empty sources are enough to build every
# dependency, so this layer is rebuilt only when Cargo.toml or Cargo.lock change. The harness is a
# workspace member, so its manifest must be present for the workspace to load.
COPY Cargo.toml Cargo.lock ./
COPY tests/harness/Cargo.toml tests/harness/Cargo.toml
RUN mkdir -p src tests/harness/src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs tests/harness/src/lib.rs
RUN cargo build --release --locked --bin ecr-public-pull-secret-operator

# The operator itself. COPY keeps the sources' timestamps, which can be older than the stub build
# above, so touch them or cargo would keep the stub binary.
COPY src src
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin ecr-public-pull-secret-operator

FROM ${RUNTIME_IMAGE}
LABEL org.opencontainers.image.title="ecr-public-pull-secret-operator" \
      org.opencontainers.image.description="Keeps Amazon ECR Public image pull Secrets fresh" \
      org.opencontainers.image.source="https://github.com/ecr-public-pull-secret-operator/ecr-public-pull-secret-operator" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /src/target/release/ecr-public-pull-secret-operator /usr/local/bin/ecr-public-pull-secret-operator
# distroless "nonroot" is uid/gid 65532; stated here too so the image is non-root whatever the base.
USER 65532:65532
# /metrics, /livez and /readyz (HTTP_ADDR).
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/ecr-public-pull-secret-operator"]
