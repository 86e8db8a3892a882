# Two commands set everything up on a fresh machine with Python 3.11+:
#   make demo   - install, generate the sample bank, ingest it and run the monthly job (`cim run`: build the
#                 warehouse, check parameters, fit and score the churn model, run the target lists, publish
#                 the data-quality report and the monthly management pack for the province and every county
#                 under outputs/reports/), then print a county's event reminders, churn watchlist and
#                 key-focus movements
#   make test   - install and run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CIM    := $(BIN)/cim
DEMO_CUSTOMERS ?= 5000
DEMO_MONTHS    ?= 13
DEMO_SEED      ?= 42
DEMO_PERIOD    ?= 2026-10

.PHONY: demo test install lint bench bench-app serve lab browser clean

$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv

# uv installs the stack in seconds where pip takes most of a minute (see ../shared/STACK.md).
$(VENV)/.installed: pyproject.toml | $(BIN)/uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e ".[dev]"
	touch $@

install: $(VENV)/.installed

# The PDFs are printed by Chromium (`make browser` installs it as root); without it the reports skip them.
demo: install browser
	$(CIM) synth --customers $(DEMO_CUSTOMERS) --months $(DEMO_MONTHS) --seed $(DEMO_SEED) --out data/raw --clean
	$(CIM) ingest data/raw
	$(CIM) run --period $(DEMO_PERIOD) $$(command -v chromium >/dev/null || echo --no-pdf)
	$(CIM) status
	$(CIM) target run events --as county_mgr_101 --limit 10 --out outputs/lists/events-101000.xlsx --split branch
	$(CIM) churn watchlist --as county_mgr_101 --limit 3 --out outputs/lists/churn-watchlist-101000.xlsx --split branch
	$(CIM) analysis focus --as county_mgr_101 --rows 10 --chart outputs/key-focus-101000.png

# The browser tests and the reports' PDFs use Debian's Chromium (never `playwright install`); Chinese text
# needs a CJK font; the report tests read PDFs with pdftotext. Installed with apt when missing (CI runs as
# root on a fresh machine).
browser:
	@need=""; \
	[ -x /usr/bin/chromium ] || need="$$need chromium"; \
	fc-list 2>/dev/null | grep -q "Noto Sans CJK" || need="$$need fonts-noto-cjk"; \
	command -v pdftotext >/dev/null || need="$$need poppler-utils"; \
	if [ -n "$$need" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$need; \
	  else echo "browser tests need:$$need (sudo apt-get install -y$$need)"; fi; \
	fi

test: install browser
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 --dist loadfile

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/python bench/foundation.py

bench-app: install browser
	$(BIN)/python bench/app_paint.py

# The apps for the demo bank: set a password first with `$(CIM) serve --set-password USER`.
serve: install
	$(CIM) serve

# JupyterLab for analysts' notebooks; as root (CI, containers) it needs --allow-root.
lab: install
	$(BIN)/jupyter lab notebooks $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

clean:
	rm -rf data/raw data/lake data/warehouse data/state outputs/*
