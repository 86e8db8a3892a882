# Two commands set everything up on a fresh machine with Python 3.11+:
#   make demo   - install, generate the sample bank, ingest it, build the warehouse, print a summary
#   make test   - install and run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CIM    := $(BIN)/cim
DEMO_CUSTOMERS ?= 5000
DEMO_MONTHS    ?= 12
DEMO_SEED      ?= 42

.PHONY: demo test install lint bench clean

$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv

# uv installs the stack in seconds where pip takes most of a minute (see ../shared/STACK.md).
$(VENV)/.installed: pyproject.toml | $(BIN)/uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(CIM) synth --customers $(DEMO_CUSTOMERS) --months $(DEMO_MONTHS) --seed $(DEMO_SEED) --out data/raw --clean
	$(CIM) ingest data/raw
	$(CIM) build
	$(CIM) status

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 --dist loadfile

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/python bench/foundation.py

clean:
	rm -rf data/raw data/lake data/warehouse data/state outputs/*
