# Make targets of the local kind cluster + mini HPC center (included by the top-level
# Makefile; standalone: make -f hack/kind/kind.mk up). Scripts live in hack/kind/.
SHELL := /bin/bash
HPCHUB_TAG ?= $(shell sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$$/\1/p' $(KIND_MK_DIR)/../../chart/hpchub/Chart.yaml)
KIND_MK_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
HPCHUB_STATE ?= /var/lib/hpchub-kind
E2E_KUBECONFIG := $(or $(KUBECONFIG),$(HPCHUB_STATE)/kubeconfig)
export HPCHUB_TAG HPCHUB_STATE
# The project's venv (hack/install-deps.sh), as in the top-level Makefile.
PYTHON ?= $(abspath $(KIND_MK_DIR)/../..)/.tools/venv/bin/python
# What hack/install-deps.sh installs under .tools/bin (helm; Go and kubectl where missing).
export PATH := $(abspath $(KIND_MK_DIR)/../..)/.tools/bin:$(PATH)

.PHONY: up down test-e2e test-existing-cluster kind-node-image kind-tools

kind-tools:
	$(KIND_MK_DIR)/install-tools.sh

kind-node-image: kind-tools ## build (or reuse) the offline kind node image
	$(KIND_MK_DIR)/install-runtime.sh
	$(KIND_MK_DIR)/build-node-image.sh

up: kind-tools ## kind cluster + images + mini HPC center + chart; prints URL and login
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory images HPCHUB_TAG=$(HPCHUB_TAG) && \
	$(KIND_MK_DIR)/up.sh && \
	echo "make up took $$(( $$(date +%s) - start )) s"

down: ## remove the kind cluster and the mini HPC center (PURGE=1: state too)
	$(KIND_MK_DIR)/down.sh

# The images' smoke tests (tests/images) run here: the images are what make up built.
test-e2e: kind-tools ## the images' smoke tests and the end-to-end tests against the make-up cluster (or KUBECONFIG)
	cd $(KIND_MK_DIR)/oci-runtime && go test -count=1 ./...
	KUBECONFIG=$(E2E_KUBECONFIG) $(PYTHON) -m pytest -p no:cacheprovider tests/images tests/e2e -v $(E2E_ARGS)

# The README's "On an existing cluster" as written, against a second kind cluster (its own
# name) and a local registry container; both are deleted afterwards.
test-existing-cluster: kind-node-image ## the README's install on an existing cluster: second kind cluster + local registry
	$(PYTHON) -m pytest -p no:cacheprovider tests/existing -v $(EXISTING_ARGS)
