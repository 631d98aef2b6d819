# make test-images: builds the images (reusing the engine's layer cache) and checks each one
# (binary runs inside, user, entrypoint, labels, shared libraries, size, saved archive). Without
# podman or buildah only the skip path is checked. Needs root (debootstrap for the base image).
.PHONY: test-images
test-images:
	@BUILD=$(BUILD) test/lib/run-tests.sh images test/images/t_images.sh
