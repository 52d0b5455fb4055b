"""The OpenAPI document covers every route, validates, and says what the answers are; /docs
works offline; and real answers, errors above all, match what it documents."""

import importlib.metadata
import re
from html.parser import HTMLParser

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from app.config import load_settings
from app.web import create_app
from tests.app.web.error_shape import assert_error_shape
from tests.factories import bulk_row

BASE = "/v1/email-accounts"
ERROR_REF = "#/components/schemas/ErrorBody"
UNDOCUMENTED = {"static", "apidocs.static", "pages.static"}  # files, not API operations


@pytest.fixture
def spec(client) -> dict:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return response.json


def answer_validator(spec: dict, name: str) -> Draft202012Validator:
    """A validator for the document's component `name`, its references resolved in place."""
    return Draft202012Validator({"$ref": f"#/components/schemas/{name}",
                                 "components": spec["components"]})


def openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule)


def test_the_document_is_valid_openapi_3_1(spec):
    validate(spec)
    assert spec["openapi"].startswith("3.1")
    assert spec["info"]["title"] == "mailconnect" and spec["info"]["description"]
    assert spec["info"]["version"] == importlib.metadata.version("mailconnect")
    assert spec["components"]["securitySchemes"]["apiKey"] == {
        "type": "apiKey", "name": "x-api-key", "in": "header"}


def test_every_route_is_documented_with_its_methods(client, spec):
    app = client.application
    rules = [rule for rule in app.url_map.iter_rules() if rule.endpoint not in UNDOCUMENTED]
    assert len(rules) >= 15
    for rule in rules:
        path = openapi_path(rule.rule)
        assert path in spec["paths"], f"{rule.rule} is not in the document: add @documented"
        methods = {m.lower() for m in rule.methods - {"HEAD", "OPTIONS"}}
        assert methods <= set(spec["paths"][path]), (rule.rule, methods)
        for method in methods:
            operation = spec["paths"][path][method]
            assert operation["summary"] and operation["responses"], (path, method)
            assert any(code < "400" for code in operation["responses"]), (path, method)


# Other vendors' dialects answer errors in that vendor's shape, which their clients parse.
VENDOR_ERRORS = {"smartlead": "OkFalseError", "mailreach": "MailReachError",
                 "lemlist": "OkFalseError"}


def test_every_error_answer_is_the_error_shape(spec):
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            vendor = VENDOR_ERRORS.get(operation["tags"][0])
            expected = f"#/components/schemas/{vendor}" if vendor else ERROR_REF
            success = next(answer for code, answer in operation["responses"].items()
                           if code < "400")
            page = set(success.get("content", ())) - {"application/json"}
            for code, answer in operation["responses"].items():
                if code >= "400" and page:  # a page (or script) answers errors in its kind
                    assert set(answer["content"]) == page, (method, path, code)
                elif code >= "400":
                    schema = answer["content"]["application/json"]["schema"]
                    assert schema == {"$ref": expected}, (method, path, code)
                if code in ("429", "503"):
                    assert "Retry-After" in answer["headers"], (method, path, code)


def test_request_bodies_parameters_and_security(spec):
    bulk = spec["paths"][f"{BASE}/connect"]["post"]
    assert set(bulk["requestBody"]["content"]) == {"application/json", "text/csv",
                                                   "multipart/form-data"}
    assert {p["name"] for p in bulk["parameters"]} == {"callbackUrl", "Idempotency-Key"}
    # The bulk body is BulkRow's own schema: a field added there is documented at once.
    assert "smtpPort" in spec["components"]["schemas"]["BulkRow"]["properties"]
    single = spec["components"]["schemas"]["SingleConnectSmtp"]["properties"]
    assert {"host", "port", "encryption", "password", "emailAddress"} <= set(single)
    listing = {p["name"]: p for p in spec["paths"][BASE]["get"]["parameters"]}
    assert listing["limit"]["schema"]["maximum"] == 200
    assert "security" not in bulk  # the document's default: an API key
    for public in ("/healthz", "/openapi.json", "/docs", "/oauth/callback"):
        assert spec["paths"][public]["get"]["security"] == [], public
        assert "401" not in spec["paths"][public]["get"]["responses"], public


def test_docs_openapi_and_healthz_need_no_key_and_are_not_limited(env, services, queue):
    app = create_app(load_settings(**{**env, "RATE_LIMIT_POLL": "1/minute"}), services, queue)
    client = app.test_client()
    for _ in range(3):
        for path in ("/openapi.json", "/docs", "/healthz"):
            response = client.get(path)
            assert response.status_code == 200, path
            assert "RateLimit-Limit" not in response.headers, path


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for name in ("src", "href", "data-spec-url"):
            if attrs.get(name):
                self.urls.append(attrs[name])


def test_docs_page_loads_only_local_assets(client):
    page = client.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    parser = _Assets()
    parser.feed(page.get_data(as_text=True))
    assert len(parser.urls) >= 5, parser.urls
    for url in parser.urls:
        assert url.startswith("/") and not url.startswith("//"), url  # no CDN, no internet
        asset = client.get(url)
        assert asset.status_code == 200 and asset.data, url
    assert b"SwaggerUIBundle" in client.get("/docs/assets/swagger-ui-bundle.js").data


def test_real_errors_of_every_blueprint_match_the_documented_shape(client, spec, api_key):
    error = answer_validator(spec, "ErrorBody")
    key = {"x-api-key": api_key}
    samples = {
        "no key": client.get(f"{BASE}/connect/jobs"),
        "bad key": client.get(BASE, headers={"x-api-key": "mc_nope"}),
        "unknown job": client.get(f"{BASE}/connect/status/nope", headers=key),
        "jobs page": client.get(f"{BASE}/connect/jobs?page=0", headers=key),
        "not JSON": client.post(f"{BASE}/connect", data=b"[", headers=key,
                                content_type="application/json"),
        "content type": client.post(f"{BASE}/connect", data=b"x", headers=key,
                                    content_type="text/plain"),
        "unknown codes": client.post(f"{BASE}/connect/nope/retry?codes=x", headers=key),
        "unknown account": client.get(f"{BASE}/12345", headers=key),
        "bad patch": client.patch(f"{BASE}/12345", data=b"[]", headers=key,
                                  content_type="application/json"),
        "oauth start": client.post(f"{BASE}/oauth/start", json={"provider": "x"}, headers=key),
        "oauth callback": client.get("/oauth/callback?state=nope"),
        "no route": client.get("/v2/nothing"),
        "method": client.put(f"{BASE}/connect/jobs", headers=key),
    }
    for name, response in samples.items():
        assert 400 <= response.status_code < 500, (name, response.status_code)
        error.validate(response.json)
        assert_error_shape(response.json)
        field = response.json["errors"][0]["field"]
        assert response.json["message"].startswith(field), (name, response.json)
        documented = spec["paths"].get(openapi_path(response.request.path), {}).get(
            response.request.method.lower())
        if documented is not None:  # a refused path or method has no operation
            assert str(response.status_code) in documented["responses"], name


def test_real_answers_match_their_documented_models(client, spec, api_key):
    key = {"x-api-key": api_key}
    accepted = client.post(f"{BASE}/connect", json=[bulk_row()], headers=key)
    assert accepted.status_code == 200
    answer_validator(spec, "Accepted").validate(accepted.json)
    request_id = accepted.json["payload"]["requestId"]
    answers = {
        "StatusAnswer": client.get(f"{BASE}/connect/status/{request_id}", headers=key),
        "JobsAnswer": client.get(f"{BASE}/connect/jobs", headers=key),
        "AccountsAnswer": client.get(BASE, headers=key),
        "Health": client.get("/healthz"),
    }
    for name, response in answers.items():
        assert response.status_code == 200, (name, response.json)
        answer_validator(spec, name).validate(response.json)
    cancelled = client.post(f"{BASE}/connect/{request_id}/cancel", headers=key)
    assert cancelled.status_code == 202
    answer_validator(spec, "StatusAnswer").validate(cancelled.json)


def test_a_single_connect_error_names_the_field_as_sent(client, api_key):
    body = {"emailServiceProvider": "custom", "test": True, "payload": {
        "smtp": {"emailAddress": "sam@example.com", "password": "pw", "host": "smtp.example.com",
                 "port": 99999, "encryption": "SSL"},
        "imap": {"password": "pw", "host": "imap.example.com", "port": 993,
                 "encryption": "bogus"}}}
    response = client.post(f"{BASE}/smtp-imap/connect", json=body,
                           headers={"x-api-key": api_key})

    assert response.status_code == 422
    assert_error_shape(response.json)
    assert {e["field"]: e["message"] for e in response.json["errors"]} == {
        "payload.smtp.port": "must be between 1 and 65535",
        "payload.imap.encryption": "must be one of ssl, tls, starttls, none or auto"}
    assert response.json["message"].startswith("payload.smtp.port: must be between")
    assert "smtpPort" not in response.data.decode()


def test_a_flat_single_connect_keeps_its_own_column_names(client, api_key):
    row = {**bulk_row(), "smtp_port": "x"}
    row.pop("smtpPort", None)
    response = client.post(f"{BASE}/smtp-imap/connect", json=row,
                           headers={"x-api-key": api_key})
    assert response.status_code == 422
    assert [e["field"] for e in response.json["errors"]] == ["smtp_port"]


def test_dialects_document_their_vendor_fields_and_authentication(spec):
    save = spec["paths"]["/api/v1/email-accounts/save"]["post"]
    assert save["security"] == [{"apiKeyQuery": []}]
    body = spec["components"]["schemas"]["SmartleadBody"]
    assert {"from_email", "smtp_port", "max_email_per_day"} <= set(body["properties"])
    assert "warmup_enabled" in body["required"]
    lemlist = spec["paths"]["/api/user/email-accounts"]["post"]
    assert lemlist["security"] == [{"basicKey": []}]
    assert spec["paths"]["/v1/imap_auth"]["post"]["security"] == [{"apiKeyHeader": []}]
