# QuantMesh image: one image for every role of docker-compose.ha.yml (web admin, runbot instances,
# Celery worker and beat, simulator, migrations). The default command serves the web admin.
#
#   docker build -t quantmesh .
#
# Stage 1 builds wheels (mysqlclient compiles against the MySQL/MariaDB client headers);
# stage 2 installs them without a compiler.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential pkg-config default-libmysqlclient-dev \
    && rm -rf /var/lib/apt/lists/*
COPY requirements.txt requirements-mysql.txt /build/
RUN pip wheel --wheel-dir /wheels -r /build/requirements.txt -r /build/requirements-mysql.txt


FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=quantmesh.settings \
    QM_VAR_DIR=/app/var
# libmariadb3: the shared library mysqlclient links against at run time. libjemalloc2: the
# allocator the runbot services preload (LD_PRELOAD in docker-compose.ha.yml); linked to one path
# whatever the architecture.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libmariadb3 libjemalloc2 \
    && ln -s "$(find /usr/lib -name libjemalloc.so.2 | head -n 1)" /usr/local/lib/libjemalloc.so.2 \
    && test -e /usr/local/lib/libjemalloc.so.2 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /wheels
COPY requirements.txt requirements-mysql.txt /app/
RUN pip install --no-index --find-links /wheels -r /app/requirements.txt -r /app/requirements-mysql.txt \
    && rm -rf /wheels

RUN groupadd --system --gid 10001 quantmesh \
    && useradd --system --uid 10001 --gid quantmesh --home-dir /app --shell /usr/sbin/nologin quantmesh
WORKDIR /app
# The code belongs to root and is read-only for the service user; only var/ is writable.
COPY manage.py ./
COPY quantmesh ./quantmesh
COPY trading ./trading
COPY locking ./locking
COPY reconciliation ./reconciliation
COPY templates ./templates
COPY deploy/gunicorn.conf.py ./deploy/gunicorn.conf.py

# Static files of the admin, gathered at build time (the secret is a build-only placeholder:
# collectstatic reads settings but touches no database and signs nothing).
RUN mkdir -p /app/var \
    && SECRET_KEY=collectstatic-build-only python manage.py collectstatic --noinput -v0 \
    && chown -R quantmesh:quantmesh /app/var

USER quantmesh
EXPOSE 8000

# The web admin's health: a database round trip. The forwarded-proto header keeps the HTTPS
# redirect (QM_SSL_REDIRECT) from answering the check with a 301. Other roles set their own
# healthcheck in docker-compose.ha.yml.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen(u.Request('http://127.0.0.1:8000/healthz', headers={'X-Forwarded-Proto': 'https'}), timeout=4)"]

CMD ["gunicorn", "quantmesh.wsgi:application", "-b", "0.0.0.0:8000", "-c", "deploy/gunicorn.conf.py"]
