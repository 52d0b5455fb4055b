"""The API as a user drives it, for the end-to-end tests."""

from __future__ import annotations

import csv
import io
import time

import pytest
import requests

from app.config import load_settings
from app.teams import create_api_key
from app.web import create_app


class Api:
    """The web API in-process, publishing to the real broker, as a user drives it."""

    def __init__(self, env: dict[str, str]) -> None:
        settings = load_settings(**env)
        self.client = create_app(settings=settings).test_client()
        services = self.client.application.extensions["mailconnect"]
        self.services = services
        self.key = create_api_key(services.db, services.clock, "acme").key

    def submit(self, rows) -> str:
        response = self.client.post("/v1/email-accounts/connect", json=rows,
                                    headers={"x-api-key": self.key})
        assert response.status_code == 200, response.json
        return response.json["payload"]["requestId"]

    def status(self, request_id: str) -> dict:
        response = self.client.get(f"/v1/email-accounts/connect/status/{request_id}",
                                   headers={"x-api-key": self.key})
        assert response.status_code == 200, response.json
        return response.json["payload"]

    def wait(self, request_id: str, timeout: float, diagnostics=lambda: "") -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status(request_id)
            if status["isCompleted"]:
                return status
            time.sleep(0.25)
        raise AssertionError(f"job not completed in {timeout}s: {status}\n{diagnostics()}")

    @staticmethod
    def report(status: dict) -> list[dict[str, str]]:
        response = requests.get(status["reportURL"], timeout=10)
        assert response.status_code == 200
        return list(csv.DictReader(io.StringIO(response.text)))


@pytest.fixture
def api(env) -> Api:
    return Api(env)
