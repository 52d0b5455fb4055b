"""The API's request and answer models, for the OpenAPI document (app/web/openapi.py).

Request bodies are the models the handlers validate with: a bulk row is `BulkRow`, and the
single connect and PATCH bodies are built from BulkRow's own fields, so a field added there is
documented everywhere at once. Query bounds and defaults live here and the handlers read them
(`app.web.common.query_int`). Answers describe the dicts the domain builds (`status_payload`,
`account_view`, `job_summary`, `protocol_view`); the spec tests validate real answers against
them.
"""

from __future__ import annotations

import copy
from typing import Annotated, Any, Literal

from annotated_types import Ge, Le
from pydantic import BaseModel, ConfigDict, Field, RootModel, create_model
from pydantic.fields import FieldInfo

from app.dialects.mapping import Dialect
from app.importing.rows import BulkRow
from app.probe.model import ErrorCode

# ------------------------------------------------------------------------------- requests


class BulkBody(RootModel[list[BulkRow]]):
    """A JSON array of accounts (or the same columns as CSV). Other tools' column names are
    accepted too (see the README's table)."""


class ReconnectBody(RootModel[list[int]]):
    """The ids of stored accounts to re-test."""


def _section(protocol: str) -> dict[str, tuple[Any, FieldInfo]]:
    # `smtpHost` is `payload.smtp.host`: BulkRow's own field, under its short name.
    return {name[len(protocol)].lower() + name[len(protocol) + 1:]: (info.annotation,
                                                                      copy.copy(info))
            for name, info in BulkRow.model_fields.items() if name.startswith(protocol)
            and name != "smtpOnly"}


SingleConnectSmtp = create_model("SingleConnectSmtp", __doc__="BulkRow's smtp* fields.",
                                 **_section("smtp"))  # type: ignore[call-overload]
SingleConnectImap = create_model("SingleConnectImap", __doc__="BulkRow's imap* fields.",
                                 **_section("imap"))  # type: ignore[call-overload]


class SingleConnectPayload(BaseModel):
    smtp: SingleConnectSmtp  # type: ignore[valid-type]
    imap: SingleConnectImap | None = None  # type: ignore[valid-type]


SingleConnectBody = create_model(
    "SingleConnectBody",
    __doc__="Saleshandy's single connect: top-level account fields, `payload.smtp` and "
            "`payload.imap`. A flat bulk row is accepted too.",
    test=(bool, Field(False, description="test without saving (a dry run)")),
    payload=(SingleConnectPayload, ...),
    **{name: (info.annotation, copy.copy(info)) for name, info in BulkRow.model_fields.items()
       if not name.startswith(("smtp", "imap")) or name == "smtpOnly"},
)  # type: ignore[call-overload]


def _optional(info: FieldInfo) -> FieldInfo:
    optional = copy.copy(info)
    optional.default = None
    return optional


AccountChange = create_model(
    "AccountChange",
    __doc__="Any bulk field; all optional. The email cannot change.",
    **{name: (info.annotation, _optional(info)) for name, info in BulkRow.model_fields.items()},
)  # type: ignore[call-overload]


class OAuthStartBody(BaseModel):
    provider: Literal["google", "microsoft", "custom"]
    redirectUrl: str = Field(description="where the browser is sent back, with accountId, "
                                         "status or error")
    email: str | None = Field(None, description="the mailbox to connect; else the one the "
                                                "person consents as")
    smtpHost: str | None = None
    smtpPort: int | None = None
    smtpEncryption: str | None = None
    imapHost: str | None = None
    imapPort: int | None = None
    imapEncryption: str | None = None


# ------------------------------------------------------------------------- query, headers


class JobOptionsQuery(BaseModel):
    callbackUrl: str | None = Field(None, description="POSTed the status when the job ends")


class RetryQuery(JobOptionsQuery):
    codes: str | None = Field(None, description="comma-separated error codes to retry: "
                                                + ", ".join(c.value for c in ErrorCode))


class JobsQuery(BaseModel):
    page: Annotated[int, Ge(1), Le(10**9)] = 1
    limit: Annotated[int, Ge(1), Le(100)] = 20


class AccountsQuery(BaseModel):
    page: Annotated[int, Ge(1), Le(10**6)] = 1
    limit: Annotated[int, Ge(1), Le(200)] = 50
    status: Annotated[int | None, Ge(0), Le(1)] = Field(None, description="1 connected, "
                                                                           "0 not")
    provider: str | None = None
    search: str | None = Field(None, description="part of the email or name")


class OAuthCallbackQuery(BaseModel):
    state: str = Field(description="the single-use state from /oauth/start")
    code: str | None = None
    error: str | None = None


class IdempotencyHeaders(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    idempotency_key: str | None = Field(
        None, alias="Idempotency-Key",
        description="the same key with the same request gets the same requestId (24 hours)")


# --------------------------------------------------------------------------------- answers


class AcceptedPayload(BaseModel):
    requestId: str


class Accepted(BaseModel):
    message: str
    payload: AcceptedPayload


class Waiting(BaseModel):
    reason: str
    resumesAt: str
    rows: int


class Webhook(BaseModel):
    state: str
    attempts: int
    error: str | None
    deliveredAt: str | None


class JobCounts(BaseModel):
    requestId: str
    kind: str = Field(description="connect, reconnect or retry")
    status: Literal["queued", "running", "completed", "failed", "cancelled"]
    isCompleted: bool
    total: int
    processed: int
    succeeded: int
    failed: int
    invalid: int
    cancelled: int
    createdAt: str | None


class JobStatus(JobCounts):
    retryOf: str | None
    progress: float
    etaSeconds: int | None
    waiting: Waiting | None
    errorsByCode: dict[str, int]
    ignoredColumns: list[str]
    error: str | None
    startedAt: str | None
    completedAt: str | None
    cancelRequestedAt: str | None
    reportURL: str | None
    failedRowsURL: str | None
    reportExpiresAt: str | None
    reportExpired: bool
    reportExpiredMessage: str | None
    webhook: Webhook | None


class StatusAnswer(BaseModel):
    payload: JobStatus


class JobSummary(JobCounts):
    completedAt: str | None


class JobsAnswerPayload(BaseModel):
    jobs: list[JobSummary]
    page: int
    limit: int
    total: int


class JobsAnswer(BaseModel):
    payload: JobsAnswerPayload


class Connection(BaseModel):
    """One protocol's test result."""

    success: bool | None
    result: str = Field(description="ok, failed or skipped")
    errorCode: str | None
    error: str | None
    hint: str | None


class ConnectAnswerPayload(BaseModel):
    id: int | None = Field(description="null on a dry run, or when the account was deleted "
                                       "during this test")
    email: str
    status: Literal[0, 1]
    smtpConnection: Connection
    imapConnection: Connection
    filledIn: list[str] = Field(None, description="values presets, DNS or detection filled")
    ignoredFields: list[str] = None  # type: ignore[assignment]
    stale: bool = Field(None, description="the account was changed or deleted during this test; "
                                          "this result was not saved")


class ConnectAnswer(BaseModel):
    message: str
    payload: ConnectAnswerPayload


class StoredConnection(BaseModel):
    result: str | None
    errorCode: str | None
    error: str | None
    hint: str | None


class ServerSettings(BaseModel):
    emailAddress: str | None
    userName: str | None
    host: str | None
    port: int | None
    encryption: str | None


class AccountView(BaseModel):
    id: int
    email: str
    emailServiceProvider: str
    fromName: str | None
    fromFirstName: str | None
    fromLastName: str | None
    status: Literal[0, 1]
    smtpOnly: bool
    suspended: bool
    smtp: ServerSettings
    imap: ServerSettings | None
    smtpConnection: StoredConnection
    imapConnection: StoredConnection
    sending: dict[str, Any]
    lastTestedAt: str | None
    createdAt: str | None
    updatedAt: str | None


class AccountAnswer(BaseModel):
    payload: AccountView


class AccountChangedPayload(AccountView):
    stale: bool = Field(None, description="changed again while it was tested")


class AccountChanged(BaseModel):
    message: str
    payload: AccountChangedPayload


class AccountsAnswerPayload(BaseModel):
    accounts: list[AccountView]
    page: int
    limit: int
    total: int


class AccountsAnswer(BaseModel):
    payload: AccountsAnswerPayload


class DeletedPayload(BaseModel):
    id: int


class Deleted(BaseModel):
    message: str
    payload: DeletedPayload


class OAuthStartedPayload(BaseModel):
    authorizeUrl: str
    state: str


class OAuthStarted(BaseModel):
    payload: OAuthStartedPayload


class Health(BaseModel):
    status: Literal["ok"]


class DependencyCheck(BaseModel):
    ok: bool
    ms: float = Field(description="how long the check took")
    error: str = Field(None, description="the error's type, when not ok")


class Readiness(BaseModel):
    status: Literal["ready"]
    checks: dict[str, DependencyCheck] = Field(description="database, redis, bucket")


class OpenApiDocument(RootModel[dict[str, Any]]):
    """This document."""


# ------------------------------------------------------------------ other vendors' dialects

def vendor_body(dialect: Dialect) -> type[BaseModel]:
    """A vendor's request body, from the same field table `app.dialects.mapping.to_record`
    maps with: each field typed like the BulkRow field it fills, yes/no and closed fields as
    what the mapping accepts, required as the dialect says."""
    fields: dict[str, Any] = {}
    for name, targets in dialect.fields.items():
        target = BulkRow.model_fields.get(targets[0]) if targets else None
        if name in dialect.flags:
            kind: Any = bool
        elif name in dialect.choices:
            kind = Literal[tuple(dialect.choices[name])]
        elif target is not None:
            kind = target.annotation
        else:
            kind = int  # Smartlead's `id`: the account to update
        meaning = f"fills {', '.join(targets)}" if targets else "the account to update"
        if name in dialect.required:
            fields[name] = (kind, Field(description=meaning))
        else:
            fields[name] = (kind | None, Field(None, description=meaning))
    title = dialect.name.capitalize()
    return create_model(f"{title}Body", __config__=ConfigDict(extra="allow"), **fields)


class VendorFieldError(BaseModel):
    field: str = Field(description="the field as the vendor names it")
    message: str


class OkFalseError(BaseModel):
    """Smartlead's and lemlist's error shape."""

    ok: Literal[False]
    message: str
    errors: list[VendorFieldError] = Field(None)


class MailReachError(BaseModel):
    """MailReach's error shape: messages listed by field."""

    message: str
    errors: dict[str, list[str]] = Field(None)


class _VendorAnswer(BaseModel):
    model_config = ConfigDict(extra="allow")
    mailconnect: dict[str, Any] = Field(
        description="mailconnect's own detail: id, status, each protocol's result and hint, "
                    "ignoredFields, filledIn")


class SmartleadAnswer(_VendorAnswer):
    ok: bool
    message: str
    data: dict[str, Any] = Field(description="id, from_email, is_smtp_success, "
                                             "is_imap_success, warmup_details")


class MailReachAnswer(_VendorAnswer):
    id: int
    email: str
    alive: bool = Field(description="both logins work")
    imap_issue: bool


class LemlistAnswer(_VendorAnswer):
    id: str
    email: str
    provider: Literal["custom"]
