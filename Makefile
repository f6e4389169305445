# dialgw: the two commands of the README, plus helpers.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test venv install clean bench

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

test: install
	$(PY) tests/summary.py --jobs=2 tests

clean:
	rm -rf $(VENV) var _trial_temp* build *.egg-info

# Benchmarks print figures; nothing in `make test` depends on timings.
bench: install
	$(PY) bench/webhooks.py
