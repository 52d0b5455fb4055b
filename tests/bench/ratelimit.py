"""What the rate limiter costs a status poll: one app with limits on and one with them off, in
one process on one database and Redis, polled in interleaved rounds so the machine's noise
falls on both alike.

    python -m tests.bench.ratelimit [--rounds 10] [--polls 200]

Prints per-poll medians and their ratio; JSON line last.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from app.config import load_settings
from app.migrate import upgrade
from app.services import build_services
from app.teams import create_api_key
from app.web import create_app
from tests.bench.environment import machine_reference, print_result
from tests.conftest import FakeQueue
from tests.servers.redis_server import private_redis

JOBS = "/v1/email-accounts/connect/jobs"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--polls", type=int, default=200)
    args = parser.parse_args()
    reference = machine_reference()
    with tempfile.TemporaryDirectory() as tmp, private_redis(Path(tmp)) as redis_url:
        env = {"MAILCONNECT_DATA_DIR": tmp, "REDIS_URL": redis_url,
               "S3_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "bench",
               "AWS_SECRET_ACCESS_KEY": "bench"}
        limited = load_settings(**env)
        upgrade(limited.sqlalchemy_url)
        services = build_services(limited)
        key = {"x-api-key": create_api_key(services.db, services.clock, "bench").key}
        clients = {
            "on": create_app(settings=limited, services=services, queue=FakeQueue()),
            "off": create_app(settings=load_settings(**env, RATE_LIMITS_ENABLED="false"),
                              services=services, queue=FakeQueue()),
        }
        clients = {name: app.test_client() for name, app in clients.items()}
        per_poll: dict[str, list[float]] = {"on": [], "off": []}
        for round_no in range(args.rounds + 2):  # the first two warm up
            for name, client in clients.items():
                started = time.perf_counter()
                for _ in range(args.polls):
                    assert client.get(JOBS, headers=key).status_code == 200
                if round_no >= 2:
                    per_poll[name].append((time.perf_counter() - started) / args.polls * 1e3)
        services.db.engine.dispose()
    on, off = (statistics.median(per_poll[name]) for name in ("on", "off"))
    print(f"per status poll, median of {args.rounds} interleaved rounds of {args.polls}: "
          f"limits on {on:.2f} ms, off {off:.2f} ms, ratio {on / off:.2f}")
    print_result({"rounds": args.rounds, "polls": args.polls, "on_ms": round(on, 3),
                      "off_ms": round(off, 3), "ratio": round(on / off, 3)}, reference)


if __name__ == "__main__":
    main()
