import pytest

from app.credentials import Secret
from app.oauth.apps import set_oauth_app
from app.teams import create_api_key
from tests.servers.oauth_server import running_oauth_server


@pytest.fixture
def team_id(services) -> int:
    return create_api_key(services.db, services.clock, "acme").team_id


@pytest.fixture
def oauth(services, team_id):
    """The team's Microsoft app, whose token endpoint is a local server."""
    with running_oauth_server() as server:
        set_oauth_app(services.db, services.cipher, services.clock, team_id, "microsoft",
                      server.client_id, Secret(server.client_secret), token_url=server.url)
        yield server
