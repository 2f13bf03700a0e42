# The two commands of the README, `make demo` and `make test`, and the developers' `make lint`. Each
# sets up what it needs: Debian packages (mosquitto, nginx, cloud-init's schema checker, shellcheck)
# and a virtualenv with the pinned Python requirements.
PYTHON ?= python3
VENV := venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SYSTEM_PACKAGES := mosquitto nginx cloud-init certbot python3-certbot-dns-route53 iproute2 procps testssl.sh faketime mosquitto-clients wrk \
	debootstrap systemd-container gnupg shellcheck
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint system clean venv

system:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

# The tools only (check, cost, verify, status, logs, ...): runtime requirements, no test suite.
venv: $(VENV)/.tools

$(VENV)/.tools: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@
	@echo "venv: OK, tools installed; try $(PY) -m wis2node --help"

demo: system $(STAMP)
	$(PY) -m wis2node demo --stack aq-examplemet-test
	@echo "demo: OK, the local node published, delivered and served the sample files"

test: system $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider tests

# The gates (docs/DEVELOPING.md): lint and format, types, the node's shell scripts as rendered, the
# workflows (actionlint also runs shellcheck over their run: steps). .ci/run runs it before the tests.
lint: system $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	MYPYPATH=policy $(VENV)/bin/mypy policy/__main__.py
	$(PY) -m scripts.shellcheck_node
	$(VENV)/bin/actionlint .github/workflows/*.yml
	@echo "lint: OK"

clean:
	rm -rf $(VENV)
