.PHONY: run test lint bench

run:  ## start web + workers on the embedded defaults
	./scripts/run.sh

test:  ## run the test suite (SQLite, and PostgreSQL when it answers)
	./scripts/test.sh

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

bench:
	.venv/bin/python -m bench.bench_auth
