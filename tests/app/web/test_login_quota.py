"""Single-account calls past the team's login quota: 429 team_login_quota, nothing changed."""

import pytest
import redis
from sqlalchemy import select

from app.jobs.loginquota import RedisLoginQuota
from app.models import EmailAccount
from tests.app.web.test_accounts import BASE, headers, mailbox, saved, single_account_calls

pytestmark = pytest.mark.integration


def test_single_account_calls_past_the_quota_get_429_and_change_nothing(
        client, api_key, real_services, team, mail_server, env):
    account_id = saved(real_services, team, mailbox(mail_server, "alice@example.test"))
    # Room for one account test (SMTP and IMAP) of this team, then none for an hour.
    real_services.login_quota = RedisLoginQuota(redis.Redis.from_url(env["REDIS_URL"]), limit=3)
    assert client.post(f"{BASE}/{account_id}/test", headers=headers(api_key)).status_code == 200
    before = client.get(f"{BASE}/{account_id}", headers=headers(api_key)).json["payload"]

    calls = single_account_calls(client, api_key, mail_server, account_id)
    for name, call in calls.items():
        refused = call()
        assert refused.status_code == 429, (name, refused.json)
        assert refused.json["errorCode"] == "team_login_quota"
        assert refused.json["message"].startswith("team_login_quota:")
        assert 3500 < int(refused.headers["Retry-After"]) <= 3600
        assert refused.json["retryAfter"] == int(refused.headers["Retry-After"])
    after = client.get(f"{BASE}/{account_id}", headers=headers(api_key)).json["payload"]
    assert after == before, "a PATCH past the quota saved nothing: the client sends it again"
    with real_services.db.reading() as session:
        assert session.scalar(select(EmailAccount.id).where(
            EmailAccount.email == "dave@example.test")) is None
    assert real_services.gate.in_use("localhost") == 0, "the refused calls gave their slots back"

    changed = client.patch(f"{BASE}/{account_id}", json={"maxEmailPerDay": 40},
                           headers=headers(api_key))
    assert changed.status_code == 200, "sending settings connect nowhere: no quota needed"
