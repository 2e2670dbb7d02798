.PHONY: run test lint bench

run:  ## start web + workers on the embedded defaults
	./scripts/run.sh

test:  ## run the test suite (SQLite, and PostgreSQL when it answers)
	./scripts/test.sh

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

bench:  ## print the benchmark figures quoted in the README (about 4 minutes)
	.venv/bin/python -m bench.bench_auth
	.venv/bin/python -m bench.bench_revocation
	.venv/bin/python -m bench.bench_credential_guard
	.venv/bin/python -m bench.bench_streaming
	.venv/bin/python -m bench.bench_ingest
	.venv/bin/python -m bench.bench_rag
	.venv/bin/python -m bench.bench_storage  # needs the weed binary `make test` builds
