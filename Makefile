# The two commands a fresh machine needs (run as root: machines are systemd-nspawn containers).
#   make demo   the main job on the embedded default: server, worker, a watched repo, a push
#   make test   everything the tests need, then the whole suite (what CI runs)
# Installs are quiet when they succeed; a failed one prints its whole log.
VENV ?= .venv
PY := $(VENV)/bin/python
APT_PACKAGES := git debootstrap systemd-container iproute2 openssh-client openssh-server chromium etcd-client
INSTALL_LOG := $(VENV)/install.log

.PHONY: demo test deps venv lint

deps:
	@if ! dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
	  echo "installing Debian packages: $(APT_PACKAGES)"; \
	  mkdir -p $(VENV); \
	  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(APT_PACKAGES); } \
	    > $(VENV)/apt.log 2>&1 || { cat $(VENV)/apt.log; echo "error: apt-get failed (log above, also in $(VENV)/apt.log)"; exit 1; }; \
	fi

# A regular (not editable) install: `make test` and `make demo` reinstall it from the checkout each
# time, so they always run the code in the tree.
venv: deps
	@test -x $(PY) || python3 -m venv $(VENV)
	@echo "installing orbiter and its test tools into $(VENV) (log: $(INSTALL_LOG))"
	@rm -rf build  # setuptools' build tree: a module deleted from the checkout must not ship from it
	@{ $(PY) -m pip install --upgrade pip && $(PY) -m pip install '.[test]'; } > $(INSTALL_LOG) 2>&1 \
	  || { cat $(INSTALL_LOG); echo "error: pip install failed (log above, also in $(INSTALL_LOG))"; exit 1; }

lint: venv
	$(VENV)/bin/ruff check .

# Machine tests of different modules run at once (each xdist worker its own subnets, state and
# Temporal server); the slowest tests are listed at the end.
TEST_WORKERS ?= 3
test: venv
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile --durations=25

demo: venv
	PATH=$(abspath $(VENV))/bin:$$PATH bash examples/demo.sh
