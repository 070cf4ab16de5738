# Qorgau dispatch service: `qorgau serve` (HTTP API on 8000 + MQTT bridge).
# Build: docker build -t qorgau .      Run: see docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Pinned dependencies first, so this layer is rebuilt only when the lock changes.
# --no-deps: the lock is complete; nothing unpinned may slip in. All packages have
# manylinux wheels, so the slim image needs no compiler.
COPY requirements.lock ./
RUN pip install --no-deps -r requirements.lock

# The project itself (non-editable). README.md* tolerates a missing README.
COPY pyproject.toml README.md* ./
COPY qorgau ./qorgau
COPY mqtt_bridge ./mqtt_bridge
COPY dispatch ./dispatch
COPY geo ./geo
COPY patrol_planner ./patrol_planner
COPY maps ./maps
COPY web ./web
RUN pip install --no-deps . \
    && qorgau --help >/dev/null

# No root at run time; /app/var is where a relative sqlite URL or other state would go.
# /var/lib/qorgau holds plans and sitings; docker-compose mounts one volume there for every replica
# (a new named volume takes this directory's owner).
RUN useradd --system --uid 10001 --home-dir /app --no-create-home qorgau \
    && mkdir -p /app/var /data /var/lib/qorgau/plans /var/lib/qorgau/sites \
    && chown qorgau:qorgau /app/var \
    && chown -R qorgau:qorgau /var/lib/qorgau
USER qorgau

# Defaults for docker-compose; override with -e. Settings are read from QORGAU_* variables
# (qorgau/settings.py); the flags below repeat the two that matter so `docker inspect` shows them.
ENV QORGAU_DB_URL=postgresql+psycopg://qorgau:qorgau@postgres:5432/qorgau \
    QORGAU_MQTT_URL=mqtt://mosquitto:1883 \
    QORGAU_HOST=0.0.0.0 \
    QORGAU_PORT=8000

EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('QORGAU_PORT', '8000'), timeout=4)"]

# sh -c so the variables are expanded at start; exec so qorgau is PID 1 and gets SIGTERM.
CMD ["sh", "-c", "exec qorgau serve --db \"$QORGAU_DB_URL\" --mqtt \"$QORGAU_MQTT_URL\""]
