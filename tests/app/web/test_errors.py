"""A database that cannot be reached is a 503 with Retry-After, in JSON; a bug stays a 500."""

import pytest
from sqlalchemy import exc as sa_exc

from app.config import load_settings
from app.devserver import free_port
from app.services import build_services
from app.web import create_app
from app.web.errors import database_unavailable
from tests.conftest import FakeQueue


@pytest.fixture(params=["postgresql", "sqlite"])
def unreachable_database(request, tmp_path) -> str:
    if request.param == "postgresql":
        # Nothing listens there: the driver's connect is refused, as when PostgreSQL is down.
        return f"postgresql+psycopg://mailconnect@127.0.0.1:{free_port()}/mailconnect"
    return f"sqlite:///{tmp_path}/no-such-directory/mailconnect.db"  # cannot be opened


def test_unreachable_database_is_503_json_with_retry_after(env, unreachable_database):
    settings = load_settings(**{**env, "DATABASE_URL": unreachable_database})
    client = create_app(services=build_services(settings), queue=FakeQueue()).test_client()

    response = client.get("/v1/email-accounts/connect/status/some-id",
                          headers={"x-api-key": "mc_whatever"})

    assert response.status_code == 503
    assert response.is_json and response.json["message"].startswith("database:")
    assert int(response.headers["Retry-After"]) > 0


def test_only_connection_failures_count_as_unavailable():
    refused = sa_exc.OperationalError("SELECT 1", {}, ConnectionRefusedError("refused"))
    dropped = sa_exc.DBAPIError("SELECT 1", {}, Exception("gone"), connection_invalidated=True)
    bug = sa_exc.ProgrammingError("SELEC 1", {}, Exception("syntax error"))
    duplicate = sa_exc.IntegrityError("INSERT", {}, Exception("duplicate key"))

    assert database_unavailable(refused) and database_unavailable(dropped)
    assert database_unavailable(sa_exc.TimeoutError("QueuePool limit reached"))
    assert not database_unavailable(bug) and not database_unavailable(duplicate)
    assert not database_unavailable(ValueError("not a database error"))
