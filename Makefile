# Two entry points, each doing its own set-up on a fresh machine:
#   make demo   -- the main job on the default data
#   make test   -- the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint setup data

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,onnx]'
	touch $(STAMP)

setup: $(STAMP)

data:
	@test -d /usr/share/datasets/fashion-mnist || \
	  { (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null || \
	    sudo sh -c 'apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist' >/dev/null; }

demo: setup data
	$(VENV)/bin/sparsenet compress --recipe deep-compression --model lenet300 --data fashion-mnist --run-dir runs/demo --out runs/demo/lenet300.snn --resume

test: setup data
	$(PY) -m pytest; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 1; fi; exit $$rc

lint: setup
	$(VENV)/bin/ruff check sparsenet tests benchmarks
	$(VENV)/bin/mypy sparsenet
