# One venv for everything; torch is pinned to the CPU wheel (a loose `torch` pulls a multi-GB CUDA build).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test lint demo bench-table bench-memory bench-fidelity bench-fidelity-sizes bench-load bench-hostile bench-search \
	bench-specialisation bench-throughput clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0 -e '.[dev,litert,openvino]'
	touch $(STAMP)

# pytest exits 5 when it collects nothing; make treats any non-zero exit as failure.
test: install
	$(VENV)/bin/ruff check shared profiler_service search_client tests bench scripts
	$(PY) -m pytest -q -p no:cacheprovider

lint: install
	$(VENV)/bin/ruff check shared profiler_service search_client tests bench scripts

demo: install
	$(PY) scripts/demo.py

# a 70-op table at 160 px per runtime, conversion and timing apart (about 40 min on 2 cores)
bench-table: install
	$(PY) bench/profile_table.py --backend onnxruntime onnxruntime-int8 openvino litert litert-int8 \
		--md docs/results/profile_table.md

bench-memory: install
	$(PY) bench/supernet_memory.py --md docs/results/supernet_memory.md

# Every runtime at 160 px (about 1.5 hours on 2 cores)
bench-fidelity: install
	$(PY) bench/fidelity.py --backends onnxruntime onnxruntime-int8 openvino litert litert-int8 --out runs/fidelity \
		--md docs/results/fidelity.md

# onnxruntime over sizes: proxyless-cifar at 32 px, proxyless-mobile at 96-224 px and widths 0.75, 1.4 (about 2 hours)
bench-fidelity-sizes: install
	$(PY) bench/fidelity.py --out runs/fidelity_sizes --md docs/results/fidelity_sizes.md

# The API under 10 / 50 / 200 clients while a job profiles (needs 2 CPUs: server + load on one, benchmark on the other).
bench-load: install
	$(PY) bench/api_load.py --clients 0,10,50,200,hostile --md docs/results/api_load.md

# Lookups while 64 connections stall their request bodies and 20 clients import ~480 KB tables at once.
bench-hostile: install
	$(PY) bench/api_load.py --clients hostile

# searched vs random nets at equal measured latency, and vs random nets through the same derive (the fill
# control); longer than before with the control nets (QUICK=1 for minutes)
bench-search: install
	$(PY) bench/search_outcome.py $(if $(QUICK),--quick,--png docs/results/search_outcome.png) \
		--md docs/results/search_outcome.md

# loader alone, search in memory, search fed by the loader, supernet vs standalone step (a few minutes)
bench-throughput: install
	$(PY) bench/search_throughput.py --md docs/results/search_throughput.md

bench-specialisation: install
	$(PY) bench/specialisation.py $(if $(QUICK),--quick,--md docs/results/specialisation.md)

clean:
	rm -rf var runs .pytest_cache
