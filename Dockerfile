# One image for the collector, the worker and the dashboard (docker-compose.yml picks the command).
FROM python:3.11-slim
# The CJK font the PDF reports embed (Chinese as real text).
RUN apt-get update && apt-get install -y --no-install-recommends fonts-wqy-microhei \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY core core
COPY collector collector
COPY analysis analysis
COPY dashboard dashboard
COPY reports reports
COPY simulator simulator
RUN pip install --no-cache-dir .
ENV PQMON_DATA_DIR=/data
VOLUME /data
ENTRYPOINT ["pqmon"]
