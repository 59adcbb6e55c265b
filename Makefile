# hpchub — the developer's entry points (see README.md). Every target installs what it
# needs; nothing has to be set up by hand first.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

# Image tags default to the chart's appVersion: chart/hpchub/Chart.yaml is the one place
# versions are bumped (a test keeps hpchub.__version__ equal to it).
HPCHUB_TAG ?= $(shell sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$$/\1/p' chart/hpchub/Chart.yaml)
# hpchub/debian-base:* is built locally from Debian's packages (no registry needed).
# Where a registry exists: make images BASE_IMAGE=debian:bookworm-slim
BASE_IMAGE ?= hpchub/debian-base:bookworm
IMAGES := hub singleuser proxy
# The project's own venv, which hack/install-deps.sh makes and fills (Debian 12's python3
# refuses `pip install` outside a venv, PEP 668). PYTHON=... runs another interpreter.
VENV ?= $(CURDIR)/.tools/venv
PYTHON ?= $(VENV)/bin/python
export PATH := $(CURDIR)/.tools/bin:$(PATH)
# This checkout's hpchub first: an editable install made from another checkout (a second
# clone, a worktree) must not answer 'import hpchub' for this one's tests or the hubs they start.
export PYTHONPATH := $(CURDIR)/images/hub:$(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH),)
export HPCHUB_TAG BASE_IMAGE
export HPCHUB_VENV := $(VENV)

.PHONY: help python deps deps-up dockerd images base-image $(addprefix image-,$(IMAGES)) registry-given push test test-fresh-debian test-faults test-walltime test-culling bench bench-scale lint schema requirements

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

python: ## the project's venv (.tools/venv) with the pinned Python packages
	hack/install-deps.sh python

deps: ## install what make test needs (apt, helm, pip)
	hack/install-deps.sh test

deps-up: ## install what make up, make images and make test-e2e need (Docker, debootstrap, Go, helm, pip)
	hack/install-deps.sh up

dockerd: deps-up ## start dockerd if no Docker engine answers
	hack/start-dockerd.sh

base-image: dockerd
	@if [[ "$(BASE_IMAGE)" == hpchub/debian-base:* ]]; then images/base/build.sh "$(BASE_IMAGE)"; fi

images: $(addprefix image-,$(IMAGES)) ## build the hub, singleuser and proxy images (no registry needed)
	@docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep -E '^hpchub/(hub|singleuser|proxy):$(HPCHUB_TAG) '

# Your site's registry and path: make images push REGISTRY=registry.example.org/hpchub tags
# each image REGISTRY/<name>:<tag> and pushes it (docker login to it first).
REGISTRY ?=
registry-given:
	@if [ -z "$(REGISTRY)" ]; then echo "push: say where, e.g. make images push REGISTRY=registry.example.org/hpchub" >&2; exit 2; fi
push: registry-given images ## tag the images REGISTRY/<name>:<tag> and docker push them (make images push REGISTRY=...)
	@for i in $(IMAGES); do \
	  echo "push: $(REGISTRY)/$$i:$(HPCHUB_TAG)"; \
	  docker tag hpchub/$$i:$(HPCHUB_TAG) $(REGISTRY)/$$i:$(HPCHUB_TAG) && docker push -q $(REGISTRY)/$$i:$(HPCHUB_TAG); \
	done

# build-ca.crt: the host's CA bundle, used only in the images' build stages (TLS proxies).
HOST_CA_BUNDLE ?= /etc/ssl/certs/ca-certificates.crt
$(addprefix image-,$(IMAGES)): image-%: base-image
	cp $(HOST_CA_BUNDLE) images/$*/build-ca.crt
	@# The hub serves the user guide and changelog before login; they live in docs/.
	@if [ "$*" = hub ]; then mkdir -p images/hub/docs && cp docs/user-guide.md docs/changelog.md images/hub/docs/; fi
	docker build --build-arg BASE_IMAGE=$(BASE_IMAGE) -t hpchub/$*:$(HPCHUB_TAG) images/$*

test: deps ## every test that needs no Kubernetes cluster (and no Docker)
	$(PYTHON) -m pytest --durations=30

test-fresh-debian: base-image ## the install path of make test (and Go) on a fresh Debian 12 container without pyenv (Docker)
	hack/test-fresh-debian.sh

test-faults: deps ## the fault suite: hub SIGKILL, slurmctld/sshd/login host down, requeue, bad requests; writes the reliability table
	$(PYTHON) -m pytest -p no:cacheprovider tests/faults -v $(FAULTS_ARGS)

test-walltime: deps ## the walltime proof (6 min): a 4-minute Slurm job in JupyterLab in Chromium, warnings, the save before the end
	$(PYTHON) -m pytest -p no:cacheprovider tests/walltime -v $(WALLTIME_ARGS)

test-culling: deps ## the issue's culling case: a kernel in a silent 10-minute loop outlives a 2-minute timeout; an idle server is warned in Lab, then culled (~15 min)
	$(PYTHON) -m pytest -p no:cacheprovider tests/integration/test_culling_long.py -v $(CULLING_ARGS)

BENCH_N ?= 20
bench: deps ## benchmarks: spawn time against the same server started by hand (writes docs/performance.md), console render time; prints tables
	@echo "== tests/bench/bench_spawn.py"; $(PYTHON) tests/bench/bench_spawn.py --n $(BENCH_N) --write docs/performance.md $(BENCH_ARGS)
	@echo "== tests/bench/bench_console.py"; $(PYTHON) tests/bench/bench_console.py

SCALE_USERS ?= 500
SCALE_PEERS ?= 20
bench-scale: deps ## a center's load: SCALE_USERS users x (SSH + Slurm) beside batchspawner and sshspawner; writes docs/performance.md
	$(PYTHON) -m pip install -q -r tests/bench/requirements-scale.txt
	$(PYTHON) tests/bench/bench_scale.py --users $(SCALE_USERS) --peers $(SCALE_PEERS) --profile --write docs/performance.md

lint: python ## ruff, the import rules (.importlinter, tests/unit/test_architecture.py) and the chart linter
	$(PYTHON) -m ruff check images/hub images/singleuser/hpchub-notebook tests hack
	$(PYTHON) -m ruff format --check images/hub images/singleuser/hpchub-notebook tests hack
	@# import-linter's command (lint-imports) run by this Python, wherever its scripts are
	cd images/hub && $(PYTHON) -c 'from importlinter.cli import lint_imports_command; lint_imports_command()' --config ../../.importlinter
	$(PYTHON) -m pytest -q -p no:cacheprovider tests/unit/test_architecture.py
	helm lint --strict chart/hpchub -f config/values-minimal.yaml

schema: python ## regenerate values.schema.json and docs/values-reference.md from values.schema.yaml, docs/rules.md from tests/chart/rules.yaml
	$(PYTHON) hack/gen-schema.py
	$(PYTHON) hack/gen-rules.py

requirements: python ## re-pin the images' Python requirements for the images' Python (Debian bookworm 3.11.2)
	$(PYTHON) -m pip install -q uv
	cd images/hub && uv pip compile -q --python-version 3.11.2 --no-header --no-annotate -o requirements.txt requirements.in
	cd images/singleuser && uv pip compile -q --python-version 3.11.2 --no-header --no-annotate -o requirements.txt requirements.in
	cd tests && uv pip compile -q --no-header --no-annotate -o requirements.txt requirements.in

# The kind cluster, the mini HPC center and the end-to-end tests (make up / down / test-e2e).
-include hack/kind/kind.mk
