# dialgw: the two commands of the README, plus helpers (`make lint`: ruff and
# mypy, also run by `make test`).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint venv install clean bench soak

venv: $(STAMP)

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet ".[test]"
	touch $(STAMP)

# Reinstall the package itself on every run so the installed copy (and the
# twistd plugins next to Twisted's) matches the source tree.
install: $(STAMP)
	$(PY) -m pip install --quiet --no-deps --force-reinstall .

run: install
	mkdir -p var
	$(VENV)/bin/dialgw-admin --config etc/dialgw-dev.conf demo-app
	$(VENV)/bin/twistd --nodaemon --pidfile= dialgw --config etc/dialgw-dev.conf

# `make test` runs `make lint` first, then the whole suite even when lint
# failed; a lint failure counts as one failure in the closing line
# (`N passed, N failed`, always the last line) and in the exit status.
test: install
	@lint=passed; $(MAKE) --no-print-directory lint || lint=failed; \
	$(PY) tests/summary.py --lint=$$lint --jobs=2 tests

# `make lint`: ruff on the whole tree, then mypy --strict (with mypy-zope) on
# dialgw/, both run even when the first fails; both read their settings from
# pyproject.toml.
lint: $(STAMP)
	@status=0; \
	echo "$(PY) -m ruff check ."; $(PY) -m ruff check . || status=1; \
	echo "$(PY) -m mypy"; $(PY) -m mypy || status=1; \
	exit $$status

# The long chaos soak (tests/soak.py): SOAK_CALLS calls of every scenario
# through a whole gateway with every fault (SOAK_FAULTS: ESL cuts, switch
# restarts, database outages, a black-holed receiver, gateway kill -9), on
# SQLite then on PostgreSQL (the local server, as the tests use it); checks,
# then prints its figures (docs/development.md). Both engines run even when
# the first fails. `make test` runs a short one (tests/test_soak.py).
SOAK_CALLS ?= 5000
SOAK_FAULTS ?= all
SOAK_ENGINES ?= sqlite postgresql
soak: install
	@status=0; for engine in $(SOAK_ENGINES); do \
	    echo "$(PY) -m tests.soak --calls $(SOAK_CALLS) --faults $(SOAK_FAULTS) --engine $$engine"; \
	    DIALGW_REQUIRE_PG=1 $(PY) -m tests.soak --calls $(SOAK_CALLS) --faults $(SOAK_FAULTS) \
	        --engine $$engine || status=1; \
	done; exit $$status

clean:
	rm -rf $(VENV) var _trial_temp* build *.egg-info .mypy_cache .ruff_cache

# Benchmarks print figures; nothing in `make test` depends on timings.
# They run in their own venv (bench/.venv) with the ESL peers from PyPI, and
# need Debian's wrk (installed with apt-get when missing, so as root).
BENCH_VENV := bench/.venv
BENCH_PY := $(BENCH_VENV)/bin/python
BENCH_STAMP := $(BENCH_VENV)/.installed

$(BENCH_STAMP): setup.py
	test -x $(BENCH_PY) || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_PY) -m pip install --quiet --upgrade pip
	$(BENCH_PY) -m pip install --quiet greenswitch genesis py-spy
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	command -v wrk >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk; }
	$(BENCH_PY) -m pip install --quiet --force-reinstall --no-deps . && $(BENCH_PY) -m pip install --quiet .
	$(BENCH_PY) bench/run_all.py

# --- Debian package (docs/packaging.md) -----------------------------------
# `make deb` installs the missing build dependencies (apt-get, so as root),
# builds from a copy of this tree in build/deb/ (so the tree and its parent
# directory stay clean) and leaves the .deb, .buildinfo and .changes in dist/.
# `make check-deb` builds, runs lintian, then installs, runs, removes and
# purges the package on this machine (root only: it changes the system).
# It runs the installed daemon with a config of its own: the installed one
# with free ports picked at run time for the API and FreeSWITCH, so it runs
# beside a switch on 127.0.0.1:8021 or anything else on the packaged ports.
# Its readiness probe is GET /healthz (503 expected: nothing listens on the
# check's FreeSWITCH port); before /healthz existed it polled GET
# /api/v1/dial/x for a 401.
DEB_STAGE := build/deb

.PHONY: deb check-deb
deb:
	rm -rf $(DEB_STAGE)
	mkdir -p $(DEB_STAGE)/src dist
	tar -cf - --exclude-vcs --exclude=./.venv --exclude=./var --exclude=./build \
	    --exclude=./dist --exclude='./_trial_temp*' --exclude=./.hypothesis \
	    --exclude='*.egg-info' --exclude=__pycache__ --exclude=dropin.cache . \
	    | tar -xf - -C $(DEB_STAGE)/src
	cd $(DEB_STAGE)/src && if ! dpkg-checkbuilddeps >/dev/null 2>&1; then \
	    DEBIAN_FRONTEND=noninteractive apt-get build-dep -y -q ./ \
	    || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get build-dep -y -q ./; }; \
	fi
	cd $(DEB_STAGE)/src && dpkg-buildpackage -us -uc -b
	for f in $(DEB_STAGE)/*.deb $(DEB_STAGE)/*.buildinfo $(DEB_STAGE)/*.changes; do \
	    mv -f "$$f" dist/ && echo "dist/$${f##*/}"; \
	done
	rm -rf $(DEB_STAGE)

check-deb: deb
	debian/check-deb
