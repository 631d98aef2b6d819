# ambit-cni — the chained CNI plugin and its installer.
# Multi-stage: the build stage compiles with the project's Makefile on Debian 12, the runtime
# stage is the same Debian base plus exactly the shared-library packages the binary loads
# (images/runtime-packages.sh). Build from the repository root with `make images`, or by hand:
#   podman build --network=host -f images/ambit-cni.Dockerfile -t ambit/ambit-cni:0.1.0 .
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
COPY cni-plugin/ cni-plugin/
RUN make -j"$(nproc)" build/bin/ambit-cni \
 && images/runtime-packages.sh build/bin/ambit-cni >build/runtime-packages

FROM ${BASE}
COPY --from=build /src/build/runtime-packages /usr/local/share/ambit/runtime-packages
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
        $(cat /usr/local/share/ambit/runtime-packages) \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log
COPY --from=build /src/build/bin/ambit-cni /usr/local/bin/ambit-cni
RUN ! ldd /usr/local/bin/ambit-cni | grep 'not found'
# root on purpose: it writes the plugin and conflist into the host's CNI dirs (hostPath); the
# cni chart runs it as uid 0 with NET_ADMIN, NET_RAW, SYS_ADMIN, SYS_PTRACE, DAC_OVERRIDE added
USER 0:0
ENTRYPOINT ["/usr/local/bin/ambit-cni"]
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="ambit-cni" \
      org.opencontainers.image.description="ambit: the chained CNI plugin and its installer" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
