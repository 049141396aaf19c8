#!/bin/bash
# Run once by the influxdb:2.7 image after its first-run setup (it runs the executable *.sh files of
# /docker-entrypoint-initdb.d with the influx CLI already configured with the admin token, and
# exports DOCKER_INFLUXDB_INIT_BUCKET_ID). pqmon speaks InfluxDB's v1-compatible API: it writes
# and queries `db=<bucket>`, which needs a DBRP mapping from that database name to the bucket.
# InfluxDB 2.x also answers through a bucket's virtual mapping; an explicit default mapping makes
# the name and the retention policy `autogen` certain whatever the version's defaults.
set -euo pipefail

bucket=${DOCKER_INFLUXDB_INIT_BUCKET:?}
bucket_id=${DOCKER_INFLUXDB_INIT_BUCKET_ID:?the influxdb image exports it after setup}

# The image runs this only once, right after setup, so the mapping cannot exist yet.
influx v1 dbrp create --db "$bucket" --rp autogen --bucket-id "$bucket_id" --default
echo "pqmon: DBRP mapping db=$bucket rp=autogen -> bucket $bucket ($bucket_id)"
