# ambit-operator — the control plane (config stream, CA, webhooks, status).
# Multi-stage: the build stage compiles with the project's Makefile on Debian 12, the runtime
# stage is the same Debian base plus exactly the shared-library packages the binary loads
# (images/runtime-packages.sh). Build from the repository root with `make images`, or by hand:
#   podman build --network=host -f images/ambit-operator.Dockerfile -t ambit/ambit-operator:0.1.0 .
# BASE defaults to Docker Hub's Debian; `make images` builds a local one with debootstrap
# (images/base.sh) and passes --build-arg BASE=localhost/ambit/debian:bookworm.
# The build stage is identical in every images/*.Dockerfile up to the program's own COPY, so
# the engine's layer cache shares the toolchain and libambit between the images.
ARG BASE=docker.io/library/debian:bookworm-slim

FROM ${BASE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev make pkg-config \
        libcurl4-openssl-dev libjansson-dev libyaml-dev libssl-dev libnl-3-dev libnl-route-3-dev \
        libmnl-dev libnftnl-dev libnghttp2-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile ./
COPY images/runtime-packages.sh images/
COPY dataplane/ dataplane/
RUN make -j"$(nproc)" lib
COPY operator/ operator/
RUN make -j"$(nproc)" build/bin/ambit-operator \
 && images/runtime-packages.sh build/bin/ambit-operator >build/runtime-packages

FROM ${BASE}
COPY --from=build /src/build/runtime-packages /usr/local/share/ambit/runtime-packages
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
        $(cat /usr/local/share/ambit/runtime-packages) \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log
RUN groupadd --system --gid 1337 ambit \
 && useradd --system --uid 1337 --gid 1337 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin ambit
COPY --from=build /src/build/bin/ambit-operator /usr/local/bin/ambit-operator
RUN ! ldd /usr/local/bin/ambit-operator | grep 'not found'
USER 1337:1337
EXPOSE 15012 15014 15017
ENTRYPOINT ["/usr/local/bin/ambit-operator"]
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="ambit-operator" \
      org.opencontainers.image.description="ambit control plane: config stream, CA, webhooks, status" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
