# The two set-up commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO   ?= runs/sine-quick

FASHION := /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install demo test lint clean

# Fashion-MNIST, offline, from Debian (`dpkg -L dataset-fashion-mnist`).
$(FASHION):
	$(SUDO) apt-get update -qq
	$(SUDO) apt-get install -y -qq dataset-fashion-mnist

$(BIN)/wiseale: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@# The CPU build of torch first: a bare `torch` requirement could pull CUDA packages.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev,all]'
	touch $@

# A C++ compiler for torch.compile (the fused aggregate KL kernel; without one wiseale warns
# and uses its eager kernel).
CXX_BIN := /usr/bin/g++
$(CXX_BIN):
	$(SUDO) apt-get update -qq
	$(SUDO) apt-get install -y -qq g++

install: $(BIN)/wiseale $(FASHION) $(CXX_BIN)

demo: install
	$(BIN)/wiseale reproduce sine --quick --out $(DEMO)
	@echo "Report: $(DEMO)/report.md"

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) runs
