# Moorage: two commands on a fresh Debian machine, as root:
#   make demo    installs what it needs and runs the demo
#   make test    installs what it needs and runs lint, types and all tests

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := python3 python3-venv python3-dev gcc make libseccomp2 busybox-static tini \
	runc crun iproute2 nftables iperf3 procps hyperfine mmdebstrap skopeo docker.io \
	docker-registry docker-compose

.PHONY: install apt venv demo test lint typecheck unit integration interop bench clean

install: apt venv

# Installs only what is missing, so a second run costs a dpkg query.
apt:
	@missing=""; for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing apt packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# Bytecode for the editable source tree, as an installed package has it: every
# container start imports these modules twice (the runtime and the container's
# init), and compiling them from source each time would dominate the start.
venv: $(VENV)/.installed
	@$(PY) -m compileall -q src/moorage

demo: install
	$(VENV)/bin/python scripts/demo.py

lint: venv
	$(VENV)/bin/ruff check src tests bench scripts
	$(VENV)/bin/ruff format --check src tests bench scripts

typecheck: venv
	$(VENV)/bin/mypy

unit: venv
	$(VENV)/bin/pytest -q tests/unit

integration: install
	$(VENV)/bin/pytest -q tests/integration

interop: install
	$(VENV)/bin/pytest -q tests/interop

test: install lint typecheck
	$(VENV)/bin/pytest -q tests/unit tests/integration tests/interop

bench: install
	$(VENV)/bin/python bench/runtime_start.py
	$(VENV)/bin/python bench/images.py
	$(VENV)/bin/python bench/registry.py
	$(VENV)/bin/python bench/registry_pull.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
