# The two commands a newcomer needs: `make demo` and `make test`.
# Each sets itself up: it creates .venv and installs the project when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SEASONREC := $(BIN)/seasonrec
# The demo keeps its files apart from anything you generate by hand (set for `make demo` only).
DEMO_DATA ?= data/demo

.PHONY: install demo demo-stop test lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# Exactly this version: a CPU wheel of it is on the dev machines; any other pulls GBs of CUDA.
	$(BIN)/pip install -q torch==2.13.0
	# hnswlib compiles from source; -march=native would tie the build to this very CPU.
	HNSWLIB_NO_NATIVE=1 $(BIN)/pip install -q -e '.[all,dev]'
	# nvidia-pytriton pins numpy<2 while Feast needs numpy>=2; only its tritonserver binary is used.
	$(BIN)/pip install -q --no-deps nvidia-pytriton==0.7.0
	# Its Python-backend stub is built against numpy 1.x: give it a Python of its own.
	test -x $(VENV)/triton-python/bin/python || $(PYTHON) -m venv $(VENV)/triton-python
	$(VENV)/triton-python/bin/pip install -q 'numpy<2' 'onnxruntime>=1.18'
	touch $@

demo demo-stop: export SEASONREC__PATHS__DATA_DIR = $(DEMO_DATA)
demo demo-stop: export SEASONREC__TRITON__REPOSITORY = $(DEMO_DATA)/model_repository
# Each step's own summary line says what ran: the command lines themselves are not echoed.
demo: install
	@$(SEASONREC) data generate
	@$(SEASONREC) data ingest --source canonical --input $(DEMO_DATA)/raw
	@$(SEASONREC) features build
	@$(SEASONREC) features apply
	@$(SEASONREC) features materialize
	@$(SEASONREC) features online --sample 1 --items-from-pool 3
	@$(SEASONREC) features training-set --end 2024-10-01T00:00:00 --negatives 7 --out $(DEMO_DATA)/training_set.parquet
	@$(SEASONREC) train --workers 2 --training-set $(DEMO_DATA)/training_set.parquet --out $(DEMO_DATA)/checkpoints/ranker
	@$(SEASONREC) evaluate --checkpoint $(DEMO_DATA)/checkpoints/ranker --test-start 2024-10-01 --test-end 2024-12-31 --out $(DEMO_DATA)/evaluation
	@$(SEASONREC) export --checkpoint $(DEMO_DATA)/checkpoints/ranker --training-set $(DEMO_DATA)/training_set.parquet --metrics $(DEMO_DATA)/evaluation/metrics.json
	@$(SEASONREC) serve stop
	@$(SEASONREC) serve start
	@$(SEASONREC) recommend --users 1 --k 5 --region GB --region AU --at 2024-07-10T12:00:00 --at 2024-12-10T12:00:00
	@echo
	@echo "What to open next (the stack is still running; stop it with: make demo-stop):"
	@echo "  the web page   http://127.0.0.1:8080/"
	@echo "  the API docs   http://127.0.0.1:8080/docs"
	@echo "  the report     $(DEMO_DATA)/evaluation/report.html"
	@echo "  the write token for the page's events box: $(DEMO_DATA)/serve/write_token"

demo-stop: install
	$(SEASONREC) serve stop

test: install
	$(BIN)/ruff check platform tests feature_repo ray_jobs
	@.ci/chromium.sh
	@$(BIN)/pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests; that is a failure" >&2; fi; \
	exit $$rc

lint: install
	$(BIN)/ruff check platform tests feature_repo ray_jobs

clean:
	rm -rf data/demo .pytest_cache
