# Starts throwaway PostgreSQL and Redis servers on loopback, in a temp dir, for tests.
# Sourced by scripts/test. Installs the Debian packages when missing (needs root).
# Exports REI_TEST_POSTGRES_URL and REI_TEST_REDIS_URL; `rei_services_stop` cleans up.

rei_log() { printf '[services] %s\n' "$*" >&2; }

rei_pg_bindir() {
    local d
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/initdb" ] && { echo "$d"; return 0; }
    done
    command -v initdb >/dev/null 2>&1 && { dirname "$(command -v initdb)"; return 0; }
    return 1
}

rei_install() {
    if [ "$(id -u)" != 0 ]; then
        rei_log "missing packages ($*) and not root: install them or run as root"
        return 1
    fi
    rei_log "installing $* with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

rei_free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

rei_services_start() {
    local missing=()
    rei_pg_bindir >/dev/null || missing+=(postgresql)
    command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
    # The Redis-over-TLS test makes its certificates with the openssl tool.
    command -v openssl >/dev/null 2>&1 || missing+=(openssl)
    if [ "${#missing[@]}" -gt 0 ]; then rei_install "${missing[@]}" || return 1; fi

    REI_SERVICES_DIR=$(mktemp -d /tmp/rei-services.XXXXXX)
    chmod 755 "$REI_SERVICES_DIR"
    export REI_SERVICES_DIR

    # PostgreSQL refuses to run as root: run it as the `postgres` user when we are root.
    local bindir pg_port run_as=()
    bindir=$(rei_pg_bindir)
    pg_port=$(rei_free_port)
    mkdir -p "$REI_SERVICES_DIR/pg"
    if [ "$(id -u)" = 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/sh postgres
        chown postgres "$REI_SERVICES_DIR/pg"
        run_as=(runuser -u postgres --)
    fi
    "${run_as[@]}" "$bindir/initdb" -D "$REI_SERVICES_DIR/pg/data" -U rei --auth=trust -E UTF8 >"$REI_SERVICES_DIR/pg/initdb.log" 2>&1 \
        || { cat "$REI_SERVICES_DIR/pg/initdb.log" >&2; return 1; }
    # TLS too (the sslmode=verify-full test): a throwaway CA and a certificate for
    # 127.0.0.1; plain connections keep working beside it.
    local tls="$REI_SERVICES_DIR/pg/tls"
    mkdir -p "$tls"
    (
        cd "$tls" &&
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=rei-test-ca -keyout ca.key -out ca.pem &&
        openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout server.key -out server.csr &&
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >san.ext &&
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile san.ext -out server.pem &&
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=rei-other-ca -keyout other-ca.key -out other-ca.pem
    ) >/dev/null 2>&1 || { rei_log "cannot make the PostgreSQL test certificate (openssl)"; return 1; }
    chmod 600 "$tls/server.key"
    [ "$(id -u)" = 0 ] && chown -R postgres "$tls"
    # fsync off: these databases are thrown away; the tests kill clients, not the server.
    "${run_as[@]}" "$bindir/pg_ctl" -D "$REI_SERVICES_DIR/pg/data" -l "$REI_SERVICES_DIR/pg/server.log" -w \
        -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $REI_SERVICES_DIR/pg -c fsync=off -c max_connections=400 -c ssl=on -c ssl_cert_file=$tls/server.pem -c ssl_key_file=$tls/server.key" start >/dev/null \
        || { cat "$REI_SERVICES_DIR/pg/server.log" >&2; return 1; }
    export REI_TEST_POSTGRES_CA="$tls/ca.pem" REI_TEST_POSTGRES_OTHER_CA="$tls/other-ca.pem"
    REI_PG_RUN_AS="${run_as[*]}"
    REI_PG_BINDIR=$bindir
    export REI_TEST_POSTGRES_URL="postgres://rei@127.0.0.1:$pg_port/postgres"

    local redis_port
    redis_port=$(rei_free_port)
    redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no --daemonize yes \
        --dir "$REI_SERVICES_DIR" --pidfile "$REI_SERVICES_DIR/redis.pid" --logfile "$REI_SERVICES_DIR/redis.log" >/dev/null
    local i
    for i in $(seq 1 100); do
        redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
        sleep 0.1
    done
    redis-cli -p "$redis_port" ping >/dev/null 2>&1 || { rei_log "redis did not start"; cat "$REI_SERVICES_DIR/redis.log" >&2; return 1; }
    export REI_TEST_REDIS_URL="redis://127.0.0.1:$redis_port/"
    rei_log "postgres on 127.0.0.1:$pg_port, redis on 127.0.0.1:$redis_port (in $REI_SERVICES_DIR)"
}

rei_services_stop() {
    [ -n "${REI_SERVICES_DIR:-}" ] && [ -d "$REI_SERVICES_DIR" ] || return 0
    if [ -f "$REI_SERVICES_DIR/pg/data/postmaster.pid" ]; then
        ${REI_PG_RUN_AS:-} "$REI_PG_BINDIR/pg_ctl" -D "$REI_SERVICES_DIR/pg/data" -m immediate stop >/dev/null 2>&1 || true
    fi
    if [ -f "$REI_SERVICES_DIR/redis.pid" ]; then
        kill "$(cat "$REI_SERVICES_DIR/redis.pid")" 2>/dev/null || true
    fi
    rm -rf "$REI_SERVICES_DIR"
}
