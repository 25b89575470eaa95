# Vigie: two commands do all set-up on a fresh machine.
#   make run   install the runtime, ingest the data directory, forecast, serve the API and dashboard
#   make test  install the runtime and the development tools, run the test suite and ruff
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# One stamp per requirements file: editing one reinstalls it (requirements-dev.txt includes
# requirements.txt, so its stamp also stands for the runtime).
STAMP := $(VENV)/.installed-runtime
DEV_STAMP := $(VENV)/.installed-dev
export VIGIE_HOME ?= $(CURDIR)/var
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test install install-dev browser lint ingest forecast serve bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): requirements.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

$(DEV_STAMP): requirements-dev.txt requirements.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(DEV_STAMP) $(STAMP)

install: $(STAMP)

install-dev: $(DEV_STAMP)

# Debian's Chromium and driver for the browser tests, installed with apt-get when missing; never
# fails: when it cannot install, it says why and the browser tests skip with that reason.
browser:
	@sh tests/browser_setup.sh

lint: install-dev
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports --no-cache

test: install-dev browser
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -q

ingest: install
	$(PY) -m service ingest

forecast: install
	$(PY) -m service forecast-all

serve: install
	$(PY) -m service serve --host $(HOST) --port $(PORT)

# A forecast that fails (forecast-all exits 1, one line each) does not stop the service: the
# others are published and served. Nothing to forecast (exit 2, e.g. no vintage) stops here.
run: install ingest
	@$(PY) -m service forecast-all; status=$$?; \
	if [ $$status -eq 1 ]; then echo "make run: some forecasts failed (see above); serving" \
	  "what was published"; elif [ $$status -ne 0 ]; then exit $$status; fi
	$(PY) -m service serve --host $(HOST) --port $(PORT)

# Benchmarks print figures (ratios against a reference measured in the same run).
bench: install-dev
	$(PY) bench/ingest.py
	$(PY) bench/occupancy_rebuild.py
	$(PY) bench/epidemic_risk.py
	$(PY) bench/incidence_estimated.py
	$(PY) bench/forecast.py
	$(PY) bench/scenario.py
	$(PY) bench/scenario_validation.py
	$(PY) bench/api_load.py
	$(PY) bench/api_load.py --two-processes
	$(PY) bench/dashboard.py
	$(PY) bench/notebooks.py
	# Synthetic 1,000 / 10,000 / 35,000 communes: ~50 min at load 20 on 2 cores, peak RSS 11.6 GB.
	$(PY) bench/growth.py --sizes 1000 10000 35000

clean:
	rm -rf var .pytest_cache .ruff_cache
