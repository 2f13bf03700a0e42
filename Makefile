# The two commands of the README: `make demo` and `make test`. Both set up what they need:
# Debian packages (mosquitto, nginx, cloud-init's schema checker) and a virtualenv with the
# pinned Python requirements.
PYTHON ?= python3
VENV := venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SYSTEM_PACKAGES := mosquitto nginx cloud-init certbot python3-certbot-dns-route53 iproute2 procps testssl.sh faketime mosquitto-clients wrk \
	debootstrap systemd-container gnupg
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test system clean venv

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

clean:
	rm -rf $(VENV)
