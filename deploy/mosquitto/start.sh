#!/bin/sh
# Starts Mosquitto in docker-compose.yml's mosquitto service (the image's /bin/sh; run as root,
# Mosquitto itself drops to its user `mosquitto`).
#
# - The password file and ACL that `pqmon broker credentials` wrote into $BROKER_DIR are copied to
#   $RUN_DIR owned by `mosquitto` with mode 0600, whoever owns them on the host.
# - When $CERT_DIR holds server.crt and server.key (and ca.crt for client certificates, optional),
#   a TLS listener on 8883 is added to the configuration.
# - Every $POLL_S seconds the two files are compared with the copies: when `pqmon broker
#   credentials` wrote new ones, they are copied again and Mosquitto reloads them (SIGHUP), so
#   new meters can sign in without a restart. `docker compose kill -s HUP mosquitto` does it at once.
set -eu

CONF_SRC=${CONF_SRC:-/etc/pqmon/mosquitto/mosquitto.conf}
BROKER_DIR=${BROKER_DIR:-/etc/pqmon/broker}
CERT_DIR=${CERT_DIR:-/etc/pqmon/certs}
RUN_DIR=${RUN_DIR:-/mosquitto/run}
MOSQUITTO=${MOSQUITTO:-mosquitto}
BROKER_USER=${BROKER_USER:-mosquitto}
POLL_S=${POLL_S:-10}
TLS_PORT=${TLS_PORT:-8883}

say() { echo "start.sh: $*" >&2; }

install_file() { # SRC DEST MODE: a private copy the broker's user can read
  cp "$1" "$2.new"
  chown "$BROKER_USER" "$2.new"
  chmod "$3" "$2.new"
  mv "$2.new" "$2"
}

sync_auth() {
  if [ -f "$BROKER_DIR/passwd" ] && [ -f "$BROKER_DIR/acl" ]; then
    install_file "$BROKER_DIR/passwd" "$RUN_DIR/passwd" 600
    install_file "$BROKER_DIR/acl" "$RUN_DIR/acl" 600
    say "password file and ACL from $BROKER_DIR loaded"
  else
    : >"$RUN_DIR/passwd.empty"
    install_file "$RUN_DIR/passwd.empty" "$RUN_DIR/passwd" 600
    echo "# no ACL yet: nothing is allowed" >"$RUN_DIR/acl.empty"
    install_file "$RUN_DIR/acl.empty" "$RUN_DIR/acl" 600
    rm -f "$RUN_DIR/passwd.empty" "$RUN_DIR/acl.empty"
    say "no passwd and acl in $BROKER_DIR yet: nobody can sign in. Write them with" \
      "'docker compose run --rm cli broker credentials /etc/pqmon/broker' (docs/operations.md);" \
      "they are picked up within ${POLL_S}s"
  fi
}

fingerprint() { cat "$BROKER_DIR/passwd" "$BROKER_DIR/acl" 2>/dev/null | cksum; }

mkdir -p "$RUN_DIR"
chown "$BROKER_USER" "$RUN_DIR"
sync_auth
printf 'topic read $SYS/broker/uptime\n' >"$RUN_DIR/health.acl"
chown "$BROKER_USER" "$RUN_DIR/health.acl"
cp "$CONF_SRC" "$RUN_DIR/mosquitto.conf"

if [ -f "$CERT_DIR/server.crt" ] && [ -f "$CERT_DIR/server.key" ]; then
  install_file "$CERT_DIR/server.crt" "$RUN_DIR/server.crt" 644
  install_file "$CERT_DIR/server.key" "$RUN_DIR/server.key" 600
  {
    echo ""
    echo "# Added by start.sh: certificates found in $CERT_DIR."
    echo "listener $TLS_PORT"
    echo "allow_anonymous false"
    echo "password_file $RUN_DIR/passwd"
    echo "acl_file $RUN_DIR/acl"
    echo "certfile $RUN_DIR/server.crt"
    echo "keyfile $RUN_DIR/server.key"
    echo "tls_version tlsv1.2"
  } >>"$RUN_DIR/mosquitto.conf"
  if [ -f "$CERT_DIR/ca.crt" ]; then
    install_file "$CERT_DIR/ca.crt" "$RUN_DIR/ca.crt" 644
    echo "cafile $RUN_DIR/ca.crt" >>"$RUN_DIR/mosquitto.conf"
  fi
  say "TLS listener on $TLS_PORT with $CERT_DIR/server.crt"
else
  say "no server.crt and server.key in $CERT_DIR: no TLS listener (plain MQTT on 1883 only)"
fi

"$MOSQUITTO" -c "$RUN_DIR/mosquitto.conf" &
pid=$!
stopping=
trap 'stopping=1; kill -TERM "$pid" 2>/dev/null' TERM INT
trap 'sync_auth; kill -HUP "$pid" 2>/dev/null' HUP

seen=$(fingerprint)
while [ -z "$stopping" ] && kill -0 "$pid" 2>/dev/null; do
  sleep "$POLL_S" &
  nap=$!
  wait "$nap" 2>/dev/null || kill "$nap" 2>/dev/null || true
  [ -z "$stopping" ] || break
  now=$(fingerprint)
  if [ "$now" != "$seen" ]; then
    seen=$now
    sync_auth
    kill -HUP "$pid" 2>/dev/null || true
  fi
done
wait "$pid"
