# make images: one OCI image per program from images/*.Dockerfile, built with podman or buildah
# (multi-stage: compiled inside a Debian build stage, minimal Debian runtime stage). Without a
# working engine it prints why and skips (exit 0). See images/README.md.
#   make images                          all images, named $(IMAGE_REGISTRY)/$(IMAGE_REPO)/<name>:$(IMAGE_TAG)
#   make images IMAGES="ambit-node"      only some
#   make images-save                     also docker-archive tarballs in build/images/
#   make images IMAGE_BASE=docker.io/library/debian:bookworm-slim   (a machine that can pull)
IMAGE_REGISTRY ?= docker.io
IMAGE_REPO ?= ambit
IMAGE_TAG ?= 0.1.0
IMAGE_BASE ?= localhost/ambit/debian:bookworm
IMAGES ?=
IMAGES_ENV = IMAGE_REGISTRY=$(IMAGE_REGISTRY) IMAGE_REPO=$(IMAGE_REPO) IMAGE_TAG=$(IMAGE_TAG) \
	IMAGE_BASE=$(IMAGE_BASE)
.PHONY: images images-save
images:
	@$(IMAGES_ENV) images/build.sh $(IMAGES)
images-save:
	@$(IMAGES_ENV) images/build.sh --save $(IMAGES)
