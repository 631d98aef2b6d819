# ambit-node — the per-node data plane and CNI node agent.
# Multi-stage: the build stage compiles with the project's Makefile on Debian 12, the runtime
# stage is the same Debian base plus exactly the shared-library packages the binary loads
# (images/runtime-packages.sh). Build from the repository root with `make images`, or by hand:
#   podman build --network=host -f images/ambit-node.Dockerfile -t ambit/ambit-node:0.1.0 .
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
COPY node-agent/ node-agent/
RUN make -j"$(nproc)" build/bin/ambit-node \
 && images/runtime-packages.sh build/bin/ambit-node >build/runtime-packages

FROM ${BASE}
COPY --from=build /src/build/runtime-packages /usr/local/share/ambit/runtime-packages
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
        $(cat /usr/local/share/ambit/runtime-packages) \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log
COPY --from=build /src/build/bin/ambit-node /usr/local/bin/ambit-node
RUN ! ldd /usr/local/bin/ambit-node | grep 'not found'
# root on purpose: it enters pod network namespaces (setns) and programs nftables there; the
# node-agent chart runs it as uid 0 with only NET_ADMIN, SYS_ADMIN and NET_RAW added
USER 0:0
EXPOSE 15020 15021
ENTRYPOINT ["/usr/local/bin/ambit-node"]
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="ambit-node" \
      org.opencontainers.image.description="ambit: the per-node data plane and CNI node agent" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
