# The two set-up commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO   ?= runs/sine-quick

FASHION := /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install demo test lint clean

# Fashion-MNIST, offline, from Debian (`dpkg -L dataset-fashion-mnist`).
# apt waits up to APT_LOCK_WAIT seconds for another process's lock instead of failing:
# install through DPkg::Lock::Timeout; update, which that option does not cover (the lists
# lock), is retried every 10 s.
APT_LOCK_WAIT ?= 600
APT := $(SUDO) apt-get -o DPkg::Lock::Timeout=$(APT_LOCK_WAIT)
APT_UPDATE := waited=0; until $(APT) update -qq; do \
	[ $$waited -lt $(APT_LOCK_WAIT) ] || exit 1; \
	echo "apt-get update failed (another process may hold apt's lock); retrying in 10 s"; \
	sleep 10; waited=$$((waited + 10)); done

$(FASHION):
	$(APT_UPDATE)
	$(APT) install -y -qq dataset-fashion-mnist

# A C++ compiler for the aggregate KL's native kernel, built at install (setup.py), and for
# torch.compile (its compiled kernel); without one the install goes on and wiseale uses the
# eager kernel (wiseale.pairwise).
CXX_BIN := /usr/bin/g++
$(CXX_BIN):
	$(APT_UPDATE)
	$(APT) install -y -qq g++

# The package builds its C++ kernel (setup.py) with the compiler above, hence the order.
NATIVE := setup.py src/wiseale/native/log_overlap.cpp src/wiseale/native/log_overlap_kernels.hpp
$(BIN)/wiseale: pyproject.toml $(NATIVE) | $(CXX_BIN)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@# The CPU build of torch first: a bare `torch` requirement could pull CUDA packages.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev,all]'
	touch $@

install: $(BIN)/wiseale $(FASHION) $(CXX_BIN)

demo: install
	$(BIN)/wiseale reproduce sine --quick --jobs 2 --out $(DEMO)  # its 5 runs, 2 at a time
	@echo "Report: $(DEMO)/report.md"

# The tests run in TEST_WORKERS processes (pytest-xdist), each with one torch thread
# (tests/conftest.py); TEST_WORKERS=0 runs them in this process, one after another; an
# empty TEST_WORKERS= means the default.
TEST_WORKERS ?= 2
test: install
	$(BIN)/python -m pytest -n $(or $(strip $(TEST_WORKERS)),2)

lint: install
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) runs
