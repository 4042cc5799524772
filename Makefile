# QuantMesh. Two commands: `make run` (paper trading + admin on SQLite) and `make test`.
# Both create .venv and install what they need on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export QM_VAR_DIR ?= $(CURDIR)/var

.PHONY: install run test lint bench clean mysql-driver

$(STAMP): requirements.txt requirements-dev.txt requirements-mysql.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "QuantMesh needs Python 3.11 or newer (found %s)" % sys.version.split()[0])'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { echo "could not create $(VENV): on Debian/Ubuntu install python3-venv"; exit 1; }
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	@$(MAKE) --no-print-directory mysql-driver
	@touch $@

# The MySQL/MariaDB driver builds from source and needs C headers; it is optional on SQLite.
mysql-driver:
	@if pkg-config --exists mysqlclient 2>/dev/null || pkg-config --exists mariadb 2>/dev/null; then \
		$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements-mysql.txt; \
	else \
		echo "note: MySQL/MariaDB client headers not found, so the optional MySQL driver is not installed."; \
		echo "      SQLite and PostgreSQL work without it (see README: Databases)."; \
	fi

install: $(STAMP)

run: $(STAMP)
	@mkdir -p $(QM_VAR_DIR)
	QM_DEBUG=1 $(BIN)/python manage.py migrate --noinput -v0
	QM_DEBUG=1 $(BIN)/python manage.py demouser
	QM_DEBUG=1 $(BIN)/python -m quantmesh.localstack --port 8000

test: $(STAMP) lint
	@mkdir -p $(QM_VAR_DIR)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Style, types and the import rules between packages (configured in pyproject.toml). Their caches
# live in $(QM_VAR_DIR)/cache, so a second run checks only what changed. The type checker loads
# quantmesh.settings, which needs QM_DEBUG=1 (or a SECRET_KEY) and no database or Redis.
LINT_CACHE := $(QM_VAR_DIR)/cache
lint: $(STAMP)
	@mkdir -p $(LINT_CACHE)
	$(BIN)/ruff check --cache-dir $(LINT_CACHE)/ruff .
	QM_DEBUG=1 $(BIN)/mypy --cache-dir $(LINT_CACHE)/mypy
	$(BIN)/lint-imports --no-logo --cache-dir $(LINT_CACHE)/import-linter

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache $(LINT_CACHE)
