"""What the app tests share: services that test logins for real, and the api_key's team."""

import pytest

from app.probe import Prober
from app.teams import team_for_key


@pytest.fixture
def real_services(services, settings):
    services.prober = Prober(settings.probe_settings())
    return services


@pytest.fixture
def team(real_services, api_key):
    return team_for_key(real_services.db, api_key)
