import time

from sqlalchemy import event

from app.teams import KeyCache, create_api_key, list_api_keys, revoke_api_key, team_for_key
from app.web import create_app

STATUS = "/v1/email-accounts/connect/status/0123456789abcdef0123456789abcdef"


class Monotonic:
    def __init__(self) -> None:
        self.at = 500.0

    def __call__(self) -> float:
        return self.at


def web_process(services, queue, now: Monotonic):
    """One web process: its own app and key cache, on the shared database."""
    app = create_app(services=services, queue=queue)
    app.extensions["mailconnect.keys"] = KeyCache(services.db, clock=services.clock,
                                                  monotonic=now, stamp_in_background=False)
    return app.test_client()


def test_a_revoked_key_is_refused_by_every_web_process_within_one_second(services, queue):
    key = create_api_key(services.db, services.clock, "acme").key
    now = Monotonic()
    processes = [web_process(services, queue, now) for _ in range(2)]
    for client in processes:  # authenticated: the unknown job is 404, not 401
        assert client.get(STATUS, headers={"x-api-key": key}).status_code == 404

    now.at += 0.4
    revoke_api_key(services.db, services.clock, key[:10])
    for client in processes:  # still within the second each process trusts its last read
        assert client.get(STATUS, headers={"x-api-key": key}).status_code == 404
    now.at += 0.6
    for client in processes:
        refused = client.get(STATUS, headers={"Authorization": f"Bearer {key}"})
        assert refused.status_code == 401
        assert refused.get_json()["message"].startswith("x-api-key: ")


def test_the_app_as_built_refuses_a_revoked_key_a_second_later(client, services, api_key):
    """create_app's own cache, on the real clock: one second after the revocation commits."""
    assert client.get(STATUS, headers={"x-api-key": api_key}).status_code == 404
    revoke_api_key(services.db, services.clock, api_key)
    time.sleep(1.0)  # the promised bound itself, not a measurement of speed
    refused = client.get(STATUS, headers={"x-api-key": api_key})
    assert refused.status_code == 401
    assert refused.get_json() == {
        "message": "x-api-key: is not a valid API key (unknown or revoked)",
        "errors": [{"field": "x-api-key", "message": "is not a valid API key (unknown or "
                                                     "revoked)"}]}


def test_requests_stamp_the_key_last_used_once(client, services, api_key):
    updates: list[str] = []

    @event.listens_for(services.db.engine, "before_cursor_execute")
    def _record(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("UPDATE") and "api_keys" in statement:
            updates.append(statement)

    for _ in range(30):
        assert client.get(STATUS, headers={"x-api-key": api_key}).status_code == 404
    team_id = team_for_key(services.db, api_key)
    for _ in range(500):  # the stamp is written by its own thread: wait for it to land
        if list_api_keys(services.db, team_id)[0].last_used_at is not None:
            break
        time.sleep(0.01)
    assert list_api_keys(services.db, team_id)[0].last_used_at is not None
    assert len(updates) == 1
