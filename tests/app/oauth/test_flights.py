"""One refresh per refresh token: the local token endpoint rotates refresh tokens and refuses
a spent one (invalid_grant), as providers with rotation do, so sending one twice fails."""

import threading
import time

import pytest
import redis

from app.credentials import Secret
from app.importing.rows import ACCESS_TOKEN, REFRESH_TOKEN
from app.oauth.flights import KEY_PREFIX, LocalFlights, RedisFlights, token_digest
from app.oauth.tokens import RefreshFailed, TokenRefresher
from app.outbound import post_checked
from tests.app.oauth.test_tokens import LOOPBACK


def refresher(services, flights, post=post_checked) -> TokenRefresher:
    return TokenRefresher(services.db, services.cipher, services.clock,
                          allow_networks=LOOPBACK, post=post, flights=flights)


def redis_flights(services, wait_seconds: float = 15.0) -> RedisFlights:
    # Its own client, as another process would have.
    return RedisFlights(redis.Redis.from_url(services.settings.redis_url), services.cipher,
                        wait_seconds=wait_seconds)


def slow_post(*args):
    time.sleep(0.3)  # long enough for a second refresh of the same token to start meanwhile
    return post_checked(*args)


@pytest.mark.parametrize("kind", ["local", "redis"])
def test_a_token_a_finished_refresh_spent_gets_that_refreshs_tokens(services, team_id, oauth,
                                                                      kind):
    flights = LocalFlights() if kind == "local" else redis_flights(services)
    spent = {REFRESH_TOKEN: Secret(oauth.grant("ann@contoso.com"))}
    first = refresher(services, flights).fresh(team_id, "microsoft", spent)
    # A job row that still carries the token the first refresh rotated away.
    again = refresher(services, flights).fresh(team_id, "microsoft", dict(spent))
    assert again == first and oauth.requests == 1
    assert first[REFRESH_TOKEN] != spent[REFRESH_TOKEN], "the endpoint rotated it"

    with pytest.raises(RefreshFailed, match="invalid_grant"):
        # What happened before: the spent token sent again is refused.
        refresher(services, LocalFlights()).fresh(team_id, "microsoft", dict(spent))


@pytest.mark.parametrize("kind", ["local", "redis"])
def test_two_tests_refreshing_one_token_at_once_send_it_once(services, team_id, oauth, kind):
    spent = {REFRESH_TOKEN: Secret(oauth.grant("bob@contoso.com"))}
    shared = LocalFlights()
    start = threading.Barrier(2)
    answers: list = [None, None]

    def refresh(i: int) -> None:
        # Redis: each with its own client, as two processes would be.
        flights = shared if kind == "local" else redis_flights(services)
        start.wait(10)
        answers[i] = refresher(services, flights, slow_post).fresh(
            team_id, "microsoft", dict(spent))

    threads = [threading.Thread(target=refresh, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert answers[0] is not None and answers[0] == answers[1]
    assert oauth.requests == 1


def test_redis_holds_a_hash_of_the_token_and_the_tokens_sealed(services, team_id, oauth):
    spent = {REFRESH_TOKEN: Secret(oauth.grant("bea@contoso.com"))}
    fresh = refresher(services, redis_flights(services)).fresh(team_id, "microsoft", spent)
    client = redis.Redis.from_url(services.settings.redis_url)
    digest = token_digest(spent[REFRESH_TOKEN])
    assert client.keys(f"{KEY_PREFIX}:{digest}:*") == [f"{KEY_PREFIX}:{digest}:kept".encode()]
    keys = client.keys(f"{KEY_PREFIX}:*")
    stored = b"".join([*keys, *(client.get(k) or b"" for k in keys)])
    for secret in (spent[REFRESH_TOKEN], fresh[REFRESH_TOKEN], fresh[ACCESS_TOKEN]):
        assert secret.reveal().encode() not in stored


def test_a_refusal_is_not_kept(services, team_id, oauth):
    flights = redis_flights(services)
    token = {REFRESH_TOKEN: Secret(oauth.grant("cy@contoso.com"))}
    oauth.status_override = 503
    with pytest.raises(RefreshFailed) as outage:
        refresher(services, flights).fresh(team_id, "microsoft", token)
    assert outage.value.transient
    oauth.status_override = None
    fresh = refresher(services, flights).fresh(team_id, "microsoft", dict(token))
    assert fresh[ACCESS_TOKEN].reveal() == oauth.issued[-1] and oauth.requests == 2


def test_tokens_are_kept_only_while_their_access_token_is_good(services, team_id, oauth):
    # Good for 301 s, less the 300 s refresh margin: kept for about one second.
    oauth.expires_in = 301
    flights = redis_flights(services)
    spent = {REFRESH_TOKEN: Secret(oauth.grant("dee@contoso.com"))}
    refresher(services, flights).fresh(team_id, "microsoft", spent)
    time.sleep(1.5)
    with pytest.raises(RefreshFailed, match="invalid_grant"):
        refresher(services, flights).fresh(team_id, "microsoft", dict(spent))
    assert oauth.requests == 2


def test_a_refresh_stuck_in_another_process_is_a_transient_failure(services, team_id, oauth):
    spent = {REFRESH_TOKEN: Secret(oauth.grant("eve@contoso.com"))}
    client = redis.Redis.from_url(services.settings.redis_url)
    client.set(f"{KEY_PREFIX}:{token_digest(spent[REFRESH_TOKEN])}:lock", "someone", px=5000)
    with pytest.raises(RefreshFailed) as busy:
        refresher(services, redis_flights(services, wait_seconds=0.3)).fresh(
            team_id, "microsoft", spent)
    assert busy.value.transient and "still running" in str(busy.value)
    assert oauth.requests == 0


class LateLook(RedisFlights):
    """Its first look for kept tokens comes just before another process stores them."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.looks = 0

    def _kept(self, key: str):
        self.looks += 1
        return None if self.looks == 1 else super()._kept(key)


def test_tokens_kept_between_the_look_and_the_lock_are_used(services, team_id, oauth):
    spent = {REFRESH_TOKEN: Secret(oauth.grant("fay@contoso.com"))}
    first = refresher(services, redis_flights(services)).fresh(team_id, "microsoft", spent)
    late = LateLook(redis.Redis.from_url(services.settings.redis_url), services.cipher,
                    wait_seconds=15.0)
    assert refresher(services, late).fresh(team_id, "microsoft", dict(spent)) == first
    assert late.looks == 2 and oauth.requests == 1
