# Two commands do all the set-up: `make demo` and `make test`.
# Each creates .venv and installs what is needed when it is missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.rmsops-installed

.PHONY: demo test lab lint clean bytecode

demo: $(STAMP) bytecode  ## the embedded demo environment with a seeded incident, triaged end to end
	$(BIN)/rmsops demo $(if $(SCENARIO),--scenario $(SCENARIO)) $(if $(REGION),--region $(REGION)) $(if $(WORKERS),--workers $(WORKERS))

test: $(STAMP) bytecode  ## lint, unit and integration tests, and every notebook under nbval
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -p tests.demo_server --nbval-lax --nbval-current-env tests notebooks

lab: $(STAMP) bytecode  ## JupyterLab on notebooks/ against a running demo environment
	$(BIN)/rmsops demo --serve --lab $(if $(SCENARIO),--scenario $(SCENARIO)) $(if $(REGION),--region $(REGION)) $(if $(WORKERS),--workers $(WORKERS))

lint: $(STAMP)
	$(BIN)/ruff check .

# pip compiles an installed wheel; an editable install is compiled here, else every process
# (and a triage starts about 20) compiles rmsops again where PYTHONDONTWRITEBYTECODE is set.
# Quick when nothing changed; a stale file is only recompiled in memory, never used.
bytecode: $(STAMP)
	@$(BIN)/python -m compileall -q rmsops > /dev/null

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "rmsops needs Python 3.11 or newer (found $$($(PYTHON) --version)); set PYTHON=python3.12"; exit 2; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[demo,lab,test]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) reports .pytest_cache
