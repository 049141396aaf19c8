# One image for every pqmon service; docker-compose.yml picks the command (collector, worker,
# dashboard, alerts run, db upgrade, ...). Build: docker compose build (or docker build -t pqmon .).
#
# Stage 1 installs the dependencies from requirements.lock, each checked against its sha256
# (--require-hashes; regenerate the lock with scripts/lock.sh), and pqmon itself into /opt/venv.
# Stage 2 is the slim runtime: that venv, the CJK font the PDF reports embed, mosquitto_passwd for
# `pqmon broker credentials`, and an unprivileged user. No secret is baked in: every credential
# comes from the environment at run time (.env.example).
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY requirements.lock ./
RUN /opt/venv/bin/pip install --require-hashes --only-binary :all: -r requirements.lock
COPY pyproject.toml README.md ./
COPY pqmon pqmon
COPY core core
COPY collector collector
COPY analysis analysis
COPY dashboard dashboard
COPY reports reports
COPY simulator simulator
# Built with the locked setuptools already in the venv: nothing unpinned is fetched.
RUN /opt/venv/bin/pip install --no-deps --no-build-isolation . \
    && /opt/venv/bin/pqmon --help >/dev/null

FROM python:3.11-slim
# fonts-wqy-microhei: the PDF reports' Chinese text. mosquitto: only for mosquitto_passwd
# (`pqmon broker credentials` hashes with it); the broker itself is the eclipse-mosquitto service.
RUN apt-get update \
    && apt-get install -y --no-install-recommends fonts-wqy-microhei mosquitto \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 pqmon \
    && useradd --system --uid 10001 --gid pqmon --home-dir /var/lib/pqmon --shell /usr/sbin/nologin pqmon \
    && install -d -o pqmon -g pqmon -m 0750 /var/lib/pqmon /var/lib/pqmon/data /var/lib/pqmon/shared \
    && install -d -o pqmon -g pqmon -m 0700 /etc/pqmon/broker
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PQMON_DATA_DIR=/var/lib/pqmon/data
WORKDIR /var/lib/pqmon
USER pqmon
# The check of whatever service this container runs (pqmon/health.py); compose sets its own too.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["pqmon", "health"]
ENTRYPOINT ["pqmon"]
CMD ["--help"]
