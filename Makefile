# The two commands a fresh machine needs (run as root: machines are systemd-nspawn containers).
#   make demo   the main job on the embedded default: server, worker, a watched repo, a push
#   make test   everything the tests need, then the whole suite (what CI runs)
VENV ?= .venv
PY := $(VENV)/bin/python
APT_PACKAGES := git debootstrap systemd-container iproute2 openssh-client openssh-server chromium etcd-client

.PHONY: demo test deps venv lint

deps:
	@if ! dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; fi

venv: deps
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[test]'

lint: venv
	$(VENV)/bin/ruff check .

test: venv
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -p no:cacheprovider

demo: venv
	PATH=$(abspath $(VENV))/bin:$$PATH bash examples/demo.sh
