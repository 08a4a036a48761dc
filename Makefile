# Two commands on a fresh machine:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Where the OpenKBP sample lies (the repository's sibling folder `shared/`).
OPENKBP_DIR ?= ../shared/data/openkbp-sample
DEMO_OUT    ?= outputs/demo

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# torch is pinned to 2.13.0 (CPU wheel on local disk) in pyproject.toml; never torchvision.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/python -m atp.demo --openkbp-dir $(OPENKBP_DIR) --out $(DEMO_OUT)

test: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed
	$(BIN)/ruff check .

bench: $(VENV)/.installed
	$(BIN)/python -m atp.bench.dose_engine

clean:
	rm -rf $(VENV) outputs .pytest_cache .ruff_cache
