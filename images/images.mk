# make images: one OCI image per program from images/*.Dockerfile, with podman or buildah when
# the machine has one (this project's CI machine has no container engine: the local cluster maps
# image names to the built binaries instead, see test/cluster/images.map).
IMAGE_TAG ?= 0.1.0
IMAGE_REPO ?= ambit
.PHONY: images
images:
	@engine=$$(command -v podman || command -v buildah || true); \
	if [ -z "$$engine" ]; then \
	    echo "images: no podman or buildah on this machine; skipping (apt-get install podman to build)"; \
	    exit 0; \
	fi; \
	for f in images/*.Dockerfile; do \
	    n=$$(basename $$f .Dockerfile); \
	    echo "images: $(IMAGE_REPO)/$$n:$(IMAGE_TAG)"; \
	    case $$engine in *buildah) $$engine bud -f $$f -t $(IMAGE_REPO)/$$n:$(IMAGE_TAG) . ;; \
	    *) $$engine build -f $$f -t $(IMAGE_REPO)/$$n:$(IMAGE_TAG) . ;; esac || exit 1; \
	done
