"""Bulk connect: submit a batch, poll its status, fetch the report link; cancel, retry and
list jobs."""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, g, jsonify, request

from app import logs
from app.importing.upload import Batch, UploadError, batch_from_csv, batch_from_json
from app.jobs.controls import (
    JobEnded,
    JobNotEnded,
    JobNotFound,
    NothingToRetry,
    cancel_job,
    list_jobs,
    retry_failed_rows,
)
from app.jobs.idempotency import (
    IdempotencyMismatch,
    RequestKey,
    check_key,
    replayed_job,
    request_hash,
)
from app.jobs.intake import JobOptions, SubmittedJob, submit_job, submit_reconnect
from app.jobs.status import JobView, job_summary, job_view, status_payload
from app.jobs.webhooks import check_callback_url
from app.probe.model import ErrorCode
from app.storage import StorageError
from app.web.auth import require_team
from app.web.common import REQUEST_ID, query_int, services
from app.web.errors import ApiError, error_response
from app.web.guards import json_body
from app.web.openapi import documented
from app.web.ratelimit import Category, rate_limited
from app.web.schemas import (
    Accepted,
    BulkBody,
    IdempotencyHeaders,
    JobOptionsQuery,
    JobsAnswer,
    JobsQuery,
    ReconnectBody,
    RetryQuery,
    StatusAnswer,
)

log = logging.getLogger(__name__)
blueprint = Blueprint("connect", __name__, url_prefix="/v1/email-accounts")
blueprint.before_request(require_team)

ACCEPTED_MESSAGE = (
    "The email accounts connection process has been initiated successfully. Please wait while "
    "we connect your email accounts. You may check the status using this API "
    "`/v1/email-accounts/connect/status/{requestId}`."
)




@blueprint.url_value_preprocessor
def _request_ids_fit(_endpoint: str | None, values: dict | None) -> None:
    request_id = (values or {}).get("request_id")
    if request_id is not None and not REQUEST_ID.fullmatch(request_id):
        raise _not_found(request_id[:100])


IDEMPOTENCY_HEADER = "Idempotency-Key"
KNOWN_ERROR_CODES = frozenset(code.value for code in ErrorCode)


@blueprint.post("/connect")
@documented(
    200, Accepted, json=BulkBody, query=JobOptionsQuery, headers=IdempotencyHeaders,
    bodies={"text/csv": {"schema": {"type": "string"}},
            "multipart/form-data": {"schema": {
                "type": "object", "required": ["file"],
                "properties": {"file": {"type": "string", "format": "binary",
                                        "description": "the CSV"}}}}},
    errors=[400, 413, 415, (422, "the body is not an array, is empty, or a CSV is malformed; "
                                 "or callbackUrl or Idempotency-Key is invalid")])
@rate_limited(Category.BULK)
def connect():
    """Bulk connect: accept a batch (JSON array, CSV, or a multipart `file`) and test it in
    the background. A bad row does not fail the request: the status reports it as invalid."""
    s = services()
    options = _job_options("connect")
    replay = _replay(options)
    if replay is not None:
        return replay
    batch = _read_batch(s.settings.max_accounts_per_request)
    submitted = submit_job(s.db, s.cipher, s.clock, g.team_id,
                           batch.records, batch.ignored_columns, options=options,
                           policy=s.settings.host_policy)
    return _accepted(submitted)


@blueprint.post("/reconnect")
@documented(200, Accepted, json=ReconnectBody, query=JobOptionsQuery,
            headers=IdempotencyHeaders, errors=[400, 413, 415, 422])
@rate_limited(Category.BULK)
def reconnect():
    """Re-test stored accounts (Saleshandy's reconnect): a job like a bulk connect."""
    s = services()
    options = _job_options("reconnect")
    replay = _replay(options)
    if replay is not None:
        return replay
    if request.mimetype != "application/json":
        raise ApiError(415, "Content-Type: must be application/json")
    ids = json_body(request.get_data())
    if not isinstance(ids, list) or not ids:
        raise ApiError(422, "body: must be a non-empty JSON array of account ids")
    limit = s.settings.max_accounts_per_request
    if len(ids) > limit:
        raise ApiError(413, f"body: has {len(ids)} ids; at most {limit} per request")
    return _accepted(submit_reconnect(s.db, s.clock, g.team_id, ids, options))


def _job_options(kind: str) -> JobOptions:
    """The request's callbackUrl and Idempotency-Key, checked."""
    key = request.headers.get(IDEMPOTENCY_HEADER)
    idempotency = None
    if key is not None:
        try:
            check_key(key)
        except ValueError as exc:
            raise ApiError(422, f"{IDEMPOTENCY_HEADER}: {exc}") from None
        # The query string counts: the same body to another callbackUrl is another request.
        idempotency = RequestKey(key, request_hash(
            request.method, request.full_path, request.mimetype, _raw_body()))
    return JobOptions(kind=kind, callback_url=_callback_url(), idempotency=idempotency)


def _raw_body() -> bytes:
    # A multipart body's boundary is random per send, so its file is what stays the same.
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("file")
        if upload is None:
            return b""
        data = upload.read()
        upload.seek(0)
        return data
    return request.get_data(cache=True)


def _callback_url() -> str | None:
    url = request.args.get("callbackUrl")
    if url is None:
        return None
    try:
        return check_callback_url(url)
    except ValueError as exc:
        raise ApiError(422, f"callbackUrl: {exc}") from None


def _replay(options: JobOptions):
    """The answer to a request whose Idempotency-Key already made a job; None otherwise."""
    if options.idempotency is None:
        return None
    s = services()
    try:
        job_id = replayed_job(s.db, s.clock.now(), g.team_id,
                              options.idempotency)
    except IdempotencyMismatch:
        raise _key_reused() from None
    return None if job_id is None else _accepted_body(job_id)


def _key_reused() -> ApiError:
    return ApiError(422, f"{IDEMPOTENCY_HEADER}: was already used with a different request "
                         "(method, path, content type or body); use a new key")


@blueprint.errorhandler(IdempotencyMismatch)
def _mismatch(_exc: IdempotencyMismatch):
    # A concurrent request with the same key and another body won the race.
    error = _key_reused()
    return error_response(error.status, error.message)


def _accepted(submitted: SubmittedJob):
    logs.bind(request_id=submitted.job_id)  # this request's later log lines name its job
    if not submitted.replayed:
        job_id = submitted.job_id
        _publish(lambda queue: queue.start_job(job_id) if submitted.needs_probing
                 else queue.finish_job(job_id), job_id)
    return _accepted_body(submitted.job_id)


def _accepted_body(job_id: str):
    # Saleshandy's document answers 200 with exactly this body, and its clients check for 200.
    # Connect, reconnect, retry and an idempotent replay all answer it, so a client has one
    # "accepted" answer to handle.
    return jsonify({
        "message": ACCEPTED_MESSAGE.replace("{requestId}", job_id),
        "payload": {"requestId": job_id},
    }), 200


def _read_batch(max_rows: int) -> Batch:
    mimetype = request.mimetype
    try:
        if mimetype == "application/json":
            return batch_from_json(json_body(request.get_data()), max_rows)
        if mimetype == "text/csv":
            return batch_from_csv(request.get_data(), max_rows)
        if mimetype == "multipart/form-data":
            upload = request.files.get("file")
            if upload is None:
                raise ApiError(422, "file: is required (a multipart field named 'file')")
            return batch_from_csv(upload.read(), max_rows)
    except UploadError as exc:
        raise ApiError(exc.status, exc.message) from None
    raise ApiError(415, "Content-Type: must be application/json, text/csv or multipart/form-data")


@blueprint.get("/connect/status/<request_id>")
@documented(200, StatusAnswer, errors=[404, (503, "the database cannot be reached, or the "
                                                  "report store cannot sign a link")])
@rate_limited(Category.POLL)
def connect_status(request_id: str):
    """A job's progress, counts by error code, and its report links once it has ended."""
    return jsonify({"payload": _status(request_id)})


def _status(request_id: str) -> dict:
    s = services()
    view = job_view(s.db, g.team_id, request_id)
    if view is None:
        raise _not_found(request_id)
    return _payload(view)


def _payload(view: JobView) -> dict:
    s = services()
    try:
        return status_payload(view, s.store, s.clock,
                              s.settings.report_url_ttl_seconds,
                              s.settings.job_retention_days)
    except StorageError as exc:
        log.error("report link for %s: %s", view.job_id, exc)
        raise ApiError(503, "reportURL: the report store cannot sign a link right now; "
                            "retry shortly") from None


def _not_found(request_id: str) -> ApiError:
    return ApiError(404, f"requestId: no import {request_id!r} for this team")


@blueprint.post("/connect/<request_id>/cancel")
@documented(202, StatusAnswer, errors=[404, (409, "the job has already ended")])
@rate_limited(Category.BULK)
def cancel(request_id: str):
    """Cancel a queued or running job: untested rows become cancelled."""
    s = services()
    try:
        outcome = cancel_job(s.db, s.clock, g.team_id, request_id)
    except JobNotFound:
        raise _not_found(request_id) from None
    except JobEnded as exc:
        raise ApiError(409, f"requestId: import {request_id!r} has already ended "
                            f"({exc.status}); only a queued or running one can be "
                            "cancelled") from None
    if outcome.job_finished:
        _publish(lambda queue: queue.finish_job(request_id), request_id)
    return jsonify({"payload": _status(request_id)}), 202


@blueprint.post("/connect/<request_id>/retry")
@documented(200, Accepted, query=RetryQuery, headers=IdempotencyHeaders, errors=[
    404, (409, "the job has not ended, or has no failed rows with those codes"),
    (422, "an unknown error code, an invalid callbackUrl or Idempotency-Key, or a key "
          "used before for another request")])
@rate_limited(Category.BULK)
def retry(request_id: str):
    """Re-test an ended job's failed rows, with their stored credentials, as a new job. The
    same Idempotency-Key with the same request answers the job it made before."""
    s = services()
    codes = _codes()
    options = _job_options("retry")
    replay = _replay(options)
    if replay is not None:
        return replay
    try:
        submitted = retry_failed_rows(s.db, s.clock, g.team_id, request_id, codes, options)
    except JobNotFound:
        raise _not_found(request_id) from None
    except JobNotEnded as exc:
        raise ApiError(409, f"requestId: import {request_id!r} is still {exc}; retry its "
                            "failed rows once it has ended") from None
    except NothingToRetry:
        which = f" with errorCode in {sorted(codes)}" if codes else ""
        raise ApiError(409, f"requestId: import {request_id!r} has no failed rows{which} "
                            "to retry") from None
    return _accepted(submitted)


def _codes() -> set[str] | None:
    raw = request.args.get("codes")
    if raw is None:
        return None
    codes = {code.strip() for code in raw.split(",") if code.strip()}
    unknown = sorted(codes - KNOWN_ERROR_CODES)
    if not codes or unknown:
        known = ", ".join(sorted(KNOWN_ERROR_CODES))
        raise ApiError(422, f"codes: unknown error codes: {', '.join(unknown) or '(none given)'}"
                            f"; use a comma-separated list of: {known}")
    return codes


@blueprint.get("/connect/jobs")
@documented(200, JobsAnswer, query=JobsQuery, errors=[(422, "page or limit is out of range")])
@rate_limited(Category.POLL)
def jobs():
    """The team's jobs, newest first."""
    s = services()
    page = query_int(JobsQuery, "page")
    limit = query_int(JobsQuery, "limit")
    found = list_jobs(s.db, g.team_id, page, limit)
    return jsonify({"payload": {
        "jobs": [job_summary(view) for view in found.jobs],
        "page": page,
        "limit": limit,
        "total": found.total,
    }})


def _publish(send, job_id: str) -> None:
    try:
        send(current_app.extensions["mailconnect.queue"])
    except Exception:  # committed already; the sweeper finishes the job if this bell is lost
        log.exception("could not publish for job %s; the sweeper will pick it up", job_id)
