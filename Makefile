# QuantMesh. Two commands: `make run` (paper trading + admin on SQLite) and `make test`.
# Both create .venv and install what they need on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export QM_VAR_DIR ?= $(CURDIR)/var

.PHONY: install run test bench clean mysql-driver

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

test: $(STAMP)
	@mkdir -p $(QM_VAR_DIR)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache
