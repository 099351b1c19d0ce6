#!/bin/sh
# Runs the worker example in the background and the producer example in the foreground on one
# store, then stops the worker with SIGTERM. With "redis" for the store it first starts a
# redis-server of its own on a free loopback port.
#   run_pair.sh WORKER PRODUCER sqlite|redis WORK_DIR
set -u
worker=$1 producer=$2 kind=$3 dir=$4
mkdir -p "$dir"
redis_pid=
if [ "$kind" = redis ]; then
  for attempt in 1 2 3 4 5; do
    port=$((20000 + $(od -An -N2 -tu2 /dev/urandom) % 20000))
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
      >"$dir/redis.log" 2>&1 &
    redis_pid=$!
    for i in $(seq 100); do
      redis-cli -p "$port" ping >/dev/null 2>&1 && break
      kill -0 "$redis_pid" 2>/dev/null || break
      sleep 0.05
    done
    redis-cli -p "$port" ping >/dev/null 2>&1 && break
    kill "$redis_pid" 2>/dev/null
    redis_pid=
  done
  [ -n "$redis_pid" ] || { echo "could not start redis-server"; exit 1; }
  url="redis://127.0.0.1:$port/0"
else
  rm -f "$dir"/jobs.db*
  url="sqlite://$dir/jobs.db"
fi
"$worker" "$url" &
worker_pid=$!
"$producer" "$url"
status=$?
kill -TERM "$worker_pid"
wait "$worker_pid" || status=$?
[ -n "$redis_pid" ] && kill "$redis_pid"
exit "$status"
