# Vigie: two commands do all set-up on a fresh machine.
#   make run   install, ingest the data directory, forecast, serve the API and dashboard
#   make test  install, run the test suite and ruff
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export VIGIE_HOME ?= $(CURDIR)/var
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test install lint ingest forecast serve bench clean

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(PY) -m ruff check .

test: install
	$(PY) -m ruff check .
	$(PY) -m pytest -q

ingest: install
	$(PY) -m service ingest

forecast: install
	$(PY) -m service forecast-all

serve: install
	$(PY) -m service serve --host $(HOST) --port $(PORT)

run: install ingest forecast serve

# Benchmarks print figures (ratios against a reference measured in the same run).
bench: install
	$(PY) bench/ingest.py
	$(PY) bench/occupancy_rebuild.py
	$(PY) bench/epidemic_risk.py
	$(PY) bench/incidence_estimated.py
	$(PY) bench/forecast.py
	$(PY) bench/scenario.py
	$(PY) bench/scenario_validation.py
	$(PY) bench/api_load.py
	$(PY) bench/dashboard.py

clean:
	rm -rf var .pytest_cache .ruff_cache
