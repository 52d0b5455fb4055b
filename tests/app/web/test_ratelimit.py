"""Rate limits per API key, counted in a real Redis shared by separate web apps."""

from __future__ import annotations

import logging
import time

import pytest
import redis

from app.config import ConfigError, load_settings
from app.devserver import free_port
from app.teams import create_api_key, hash_key
from app.web import create_app
from app.web.ratelimit import Category, category_of

pytestmark = pytest.mark.integration
BASE = "/v1/email-accounts"
SINGLE = f"{BASE}/smtp-imap/connect"
RATE_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")


@pytest.fixture
def env(env):
    """The test environment with the service's default limits (conftest raises them)."""
    return {name: value for name, value in env.items() if not name.startswith("RATE_LIMIT")}


def web_process(services, queue, settings):
    """One web process: its own app and limiter, on the shared database and Redis."""
    return create_app(settings=settings, services=services, queue=queue).test_client()


def dry_run(port: int) -> dict:
    """A single-account test of a mailbox on a port nobody listens on: refused at once."""
    server = {"emailAddress": "sam@example.test", "password": "pw", "host": "127.0.0.1",
              "port": port, "userName": "sam@example.test"}
    return {"test": True, "payload": {"smtp": {**server, "encryption": "SSL"},
                                      "imap": {**server, "encryption": "SSL"}}}


def test_the_61st_single_test_in_a_minute_is_429_counted_across_web_processes(
        services, queue, api_key, env):
    processes = [web_process(services, queue, load_settings(**env)) for _ in range(2)]
    body, key = dry_run(free_port()), {"x-api-key": api_key}
    for n in range(60):  # alternating: each process alone sees 30, so the count is Redis's
        answer = processes[n % 2].post(SINGLE, json=body, headers=key)
        assert answer.status_code == 200, answer.json
        assert answer.json["payload"]["smtpConnection"]["errorCode"] == "connection_refused"
        assert answer.headers["RateLimit-Limit"] == "60"
        assert answer.headers["RateLimit-Remaining"] == str(59 - n)
        assert 1 <= int(answer.headers["RateLimit-Reset"]) <= 60
        assert "Retry-After" not in answer.headers

    refused = processes[0].post(SINGLE, json=body, headers=key)
    assert refused.status_code == 429
    assert refused.mimetype == "application/json"
    retry_after = int(refused.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert refused.headers["RateLimit-Limit"] == "60"
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert refused.headers["RateLimit-Reset"] == str(retry_after)
    what = f"more than 60 per 1 minute single-account tests for this API key; retry in " \
           f"{retry_after} s"
    assert refused.json == {
        "message": f"x-api-key: {what}",
        "errors": [{"field": "x-api-key", "message": what}],
        "errorCode": "rate_limited", "category": "single", "limit": "60 per 1 minute",
        "retryAfter": retry_after}
    # /test and PATCH share the category's count: they are single-account tests too.
    assert processes[1].post(f"{BASE}/1/test", headers=key).status_code == 429
    assert processes[1].patch(f"{BASE}/1", json={}, headers=key).status_code == 429


def test_a_limited_key_leaves_other_keys_its_polls_and_401s_alone(services, queue, api_key,
                                                                    env):
    client = web_process(services, queue, load_settings(**env,
                                                       RATE_LIMIT_SINGLE="2/minute"))
    key = {"x-api-key": api_key}
    for _ in range(40):  # without a valid key: 401, counted against no one
        assert client.post(f"{BASE}/1/test").status_code == 401
        assert client.post(f"{BASE}/1/test", headers={"x-api-key": "mc_nope"}).status_code == 401
    assert client.post(f"{BASE}/1/test", headers=key).headers["RateLimit-Remaining"] == "1"
    assert client.post(f"{BASE}/1/test", headers=key).status_code == 404
    assert client.post(f"{BASE}/1/test", headers=key).status_code == 429
    assert client.post(f"{BASE}/1/test").status_code == 401  # still told to authenticate

    same_team = create_api_key(services.db, services.clock, "acme").key
    assert client.post(f"{BASE}/1/test", headers={"x-api-key": same_team}).status_code == 404

    for _ in range(70):  # polls have their own, far larger count
        listed = client.get(BASE, headers=key)
        assert listed.status_code == 200
    assert listed.headers["RateLimit-Limit"] == "30000"
    assert listed.headers["RateLimit-Remaining"] == str(30000 - 70)


def test_the_limit_resets_after_its_window(services, queue, api_key, env):
    client = web_process(services, queue, load_settings(**env,
                                                       RATE_LIMIT_BULK="3/second"))
    key = {"x-api-key": api_key}
    cancel = f"{BASE}/connect/0123456789abcdef0123456789abcdef/cancel"
    # Windows are aligned to the clock: start just after a second begins, so that the four
    # calls fall in one window however slow the machine is today.
    time.sleep(1 - time.time() % 1 + 0.01)
    for _ in range(3):
        assert client.post(cancel, headers=key).status_code == 404
    refused = client.post(cancel, headers=key)
    assert refused.status_code == 429
    assert refused.json["category"] == "bulk"
    assert refused.headers["Retry-After"] == "1"
    time.sleep(int(refused.headers["Retry-After"]))  # the window itself: one second
    again = client.post(cancel, headers=key)
    assert again.status_code == 404
    assert again.headers["RateLimit-Remaining"] == "2"


def test_redis_keys_hold_neither_the_key_nor_its_stored_hash(services, queue, api_key,
                                                             redis_url, env):
    client = web_process(services, queue, load_settings(**env))
    assert client.get(BASE, headers={"x-api-key": api_key}).status_code == 200
    names = [name.decode() for name in redis.Redis.from_url(redis_url).keys("*mailconnect*")]
    assert any("/poll/" in name for name in names)
    assert not [n for n in names if api_key in n or hash_key(api_key) in n]


def test_without_redis_limits_count_per_process_and_nothing_fails(services, queue, api_key,
                                                                 env, caplog):
    down = load_settings(**{**env, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"},
                         RATE_LIMIT_POLL="3/minute")
    client = web_process(services, queue, down)
    with caplog.at_level(logging.WARNING):
        answers = [client.get(BASE, headers={"x-api-key": api_key}) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[0].headers["RateLimit-Remaining"] == "2"
    assert "falling back to in-memory storage" in caplog.text


def test_rate_limits_can_be_turned_off(services, queue, api_key, env):
    client = web_process(services, queue, load_settings(**env,
                                                       RATE_LIMITS_ENABLED="false",
                                                       RATE_LIMIT_SINGLE="1/minute"))
    for _ in range(3):
        answer = client.post(f"{BASE}/1/test", headers={"x-api-key": api_key})
        assert answer.status_code == 404
        assert not set(RATE_HEADERS) & set(answer.headers.keys())


def test_every_api_route_has_a_category(services, queue, env):
    app = create_app(settings=load_settings(**env), services=services, queue=queue)
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/v1/"):
            assert isinstance(category_of(app.view_functions[rule.endpoint]), Category), rule


@pytest.mark.parametrize("value", ["lots", "60/fortnight", "0/minute", ""])
def test_a_bad_limit_string_is_refused_at_startup_naming_the_setting(value):
    with pytest.raises(ConfigError, match="RATE_LIMIT_SINGLE"):
        load_settings(RATE_LIMIT_SINGLE=value)



class Clock:
    def __init__(self, at: float) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


def test_windows_are_aligned_to_the_clock_and_the_strictest_limit_answers(redis_url):
    from app.config import parse_rate_limit
    from app.web.ratelimit import RateLimiter

    wall = Clock(1_000_000_000.25)  # a quarter of a second into a second, 40 s into a minute
    limiter = RateLimiter(redis_url, {Category.BULK: parse_rate_limit("2/second;3/minute")},
                          clock=wall)
    caller = f"team1:key{time.time_ns()}"
    first, second = (limiter.count(Category.BULK, caller) for _ in range(2))
    assert (first.limit.amount, first.remaining, first.reset_in) == (2, 1, 1)
    assert (second.remaining, second.exceeded) == (0, False)
    third = limiter.count(Category.BULK, caller)
    assert third.exceeded and third.limit.amount == 2 and third.reset_in == 1
    wall.at += 1  # the next second: the per-second window renews, the minute's does not
    fourth = limiter.count(Category.BULK, caller)
    assert fourth.exceeded and fourth.limit.amount == 3 and fourth.reset_in == 19


def test_without_redis_a_process_counts_in_memory_then_tries_redis_again(caplog):
    from app.config import parse_rate_limit
    from app.web.ratelimit import REDIS_RETRY_SECONDS, RateLimiter

    steady = Clock(0.0)
    limiter = RateLimiter(f"redis://127.0.0.1:{free_port()}/0",
                          {Category.POLL: parse_rate_limit("5/minute")}, monotonic=steady)
    with caplog.at_level(logging.WARNING):
        counts = [limiter.count(Category.POLL, "team1:keyx") for _ in range(3)]
        assert caplog.text.count("Redis unreachable") == 1  # tried once, then memory only
        steady.at += REDIS_RETRY_SECONDS
        counts.append(limiter.count(Category.POLL, "team1:keyx"))
    assert [c.remaining for c in counts] == [4, 3, 2, 1]
    assert caplog.text.count("Redis unreachable") == 2
