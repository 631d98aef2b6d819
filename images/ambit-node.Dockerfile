# ambit-node — multi-stage: build with the project's own Makefile on Debian 12, run on debian:12-slim
# with only the runtime libraries. Build from the repository root:
#   podman build -f images/ambit-node.Dockerfile -t ambit/ambit-node:0.1.0 .   (or: make images)
FROM debian:12 AS build
RUN apt-get update && apt-get install -y --no-install-recommends make build-essential pkg-config \
        libcurl4-openssl-dev libjansson-dev libyaml-dev libssl-dev libnl-3-dev libnl-route-3-dev \
        libmnl-dev libnftnl-dev libnghttp2-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN make -j"$(nproc)" build/bin/ambit-node

FROM debian:12-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libcurl4 \
        libjansson4 libyaml-0-2 libssl3 libnl-3-200 libnl-route-3-200 libmnl0 libnftnl11 \
        libnghttp2-14 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/build/bin/ambit-node /usr/local/bin/ambit-node
# runs as root: it enters pod network namespaces and edits nftables (capabilities only, see the chart)
EXPOSE 15020 15021
ENTRYPOINT ["/usr/local/bin/ambit-node"]
