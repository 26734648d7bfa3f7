"""Exits 0 once every group of the local cluster accepts a write through node 1."""
import sys

import redis

r = redis.Redis(port=7001, socket_timeout=4)
try:
    for i in range(64):
        r.set(f"interop:warmup:{i}", i)
except redis.RedisError as e:
    print(f"not ready: {e}", file=sys.stderr)
    sys.exit(1)
