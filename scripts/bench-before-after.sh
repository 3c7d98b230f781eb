#!/usr/bin/env bash
# Runs each benchmark row with an old build and the current one, one after the other.
#
#   scripts/bench-before-after.sh OLD_RELEASE_DIR
#
# OLD_RELEASE_DIR holds rei-bot and the rei-bench-* binaries of the build to compare
# with, e.g. from `git worktree add /tmp/old <rev> && cd /tmp/old &&
# CARGO_TARGET_DIR=/tmp/old-target cargo build --release -p rei-bot -p rei-tests --bins`.
set -euo pipefail
cd "$(dirname "$0")/.."
old=${1:?usage: $0 OLD_RELEASE_DIR}
new=target/release
cargo build --release --locked -p rei-bot -p rei-tests --bins
. scripts/services.sh
rei_services_start >/dev/null
trap rei_services_stop EXIT
echo "### storage"
for w in 1 8; do
  echo "old w=$w"; "$old/rei-bench-storage" --pairs 2000 --writers "$w" | grep "^| [SP]"
  echo "new w=$w"; "$new/rei-bench-storage" --pairs 2000 --writers "$w" | grep "^| [SP]"
done
echo "### jobs"
for s in 1 8; do
  echo "old slots=$s"; "$old/rei-bench-jobs" --jobs 2000 --slots "$s" --queue database 2>&1 | grep "jobs/s"
  echo "new slots=$s"; "$new/rei-bench-jobs" --jobs 2000 --slots "$s" --queue database 2>&1 | grep "jobs/s"
done
echo "### bot"
for a in "1000 500" "2000 1500"; do
  set -- $a
  echo "old users=$1 rate=$2"; "$old/rei-bench-bot" --users "$1" --rate "$2" --bot "$old/rei-bot" 2>&1 | grep -E "burst|rss"
  echo "new users=$1 rate=$2"; "$new/rei-bench-bot" --users "$1" --rate "$2" --bot "$new/rei-bot" 2>&1 | grep -E "burst|rss"
done
