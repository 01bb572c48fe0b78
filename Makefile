# Two commands do everything from a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Two stamps: what running needs (`make demo`, `make install`), and the test tools on top of it (`make test`).
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: install demo test lint bench gpu-check wheelhouse clean

$(STAMP): setup.py requirements.txt constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip setuptools wheel -c constraints.txt
	$(PY) -m pip install -c constraints.txt -e .
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(PY) -m pip install -c constraints.txt -e ".[test]"
	touch $(TEST_STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m test_script.test_demo

test: $(TEST_STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -n 2 --dist loadfile

lint: $(TEST_STAMP)
	$(PY) -m ruff check .

bench: $(TEST_STAMP)
	$(PY) benchmarks/run_all.py

# On a machine with a GPU: the CUDA cases of the device tests, then the GPU benchmark table (run even when a test
# fails; the target fails if either does). Logs and the READMEs with the GPU table go to outputs/gpu-check.
gpu-check: $(TEST_STAMP)
	$(PY) benchmarks/gpu_check.py run

# Wheels a PyTorch GPU machine without internet lacks, for its Python (WHEEL_PYTHON), into .whl/; there run
# `python3 benchmarks/gpu_check.py run --wheelhouse .whl`.
WHEEL_PYTHON ?= 3.12
wheelhouse: $(TEST_STAMP)
	$(PY) benchmarks/gpu_check.py wheelhouse --python-version $(WHEEL_PYTHON)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
