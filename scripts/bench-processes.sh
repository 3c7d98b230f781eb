#!/usr/bin/env bash
# The bot bench in four deployments, side by side (docs/benchmarks.md, "Several
# processes"): one `rei-bot run` on SQLite by long polling (the default), one on SQLite
# in webhook mode, one and two on PostgreSQL + Redis in webhook mode. Needs
# REI_TEST_POSTGRES_URL and REI_TEST_REDIS_URL (scripts/services.sh starts both); each
# PostgreSQL run gets a new, empty database.
#
#   cargo build --release -p rei-bot -p rei-tests
#   bash scripts/bench-processes.sh [USERS RATE]
set -euo pipefail
users=${1:-1000}
rate=${2:-500}
bench=target/release/rei-bench-bot
: "${REI_TEST_POSTGRES_URL:?start scripts/services.sh first}"
: "${REI_TEST_REDIS_URL:?start scripts/services.sh first}"
url_with_db() { python3 -c 'import sys,urllib.parse as u;x=u.urlparse(sys.argv[1]);print(x._replace(path="/"+sys.argv[2]).geturl())' "$1" "$2"; }
admin=$(url_with_db "$REI_TEST_POSTGRES_URL" postgres)
fresh_db() {
  local name="rei_bench_$1"
  psql "$admin" -qc "DROP DATABASE IF EXISTS $name" -c "CREATE DATABASE $name" >/dev/null 2>&1
  url_with_db "$REI_TEST_POSTGRES_URL" "$name"
}
flush_redis() { redis-cli -u "$REI_TEST_REDIS_URL" FLUSHDB >/dev/null; }
run() { echo "== $*" | sed -E "s#//([^:/@]+):[^@/]*@#//\1:***@#g"; RUST_LOG=error "$bench" --users "$users" --rate "$rate" "$@" 2>/dev/null | grep -v '^fake Bot API'; }
run
run --webhook
flush_redis
run --webhook --database "$(fresh_db one)" --redis "$REI_TEST_REDIS_URL"
flush_redis
run --processes 2 --database "$(fresh_db two)" --redis "$REI_TEST_REDIS_URL"
