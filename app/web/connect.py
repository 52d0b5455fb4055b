"""Bulk connect: submit a batch, poll its status, fetch the report link."""

from __future__ import annotations

import datetime as dt
import json
import logging

from flask import Blueprint, current_app, g, jsonify, request

from app.importing.upload import Batch, UploadError, batch_from_csv, batch_from_json
from app.jobs.intake import SubmittedJob, submit_job, submit_reconnect
from app.jobs.status import job_view
from app.services import Services
from app.storage import StorageError
from app.web.auth import require_team
from app.web.errors import ApiError

log = logging.getLogger(__name__)
blueprint = Blueprint("connect", __name__, url_prefix="/v1/email-accounts")
blueprint.before_request(require_team)

ACCEPTED_MESSAGE = (
    "The email accounts connection process has been initiated successfully. Please wait while "
    "we connect your email accounts. You may check the status using this API "
    "`/v1/email-accounts/connect/status/{requestId}`."
)


def _services() -> Services:
    return current_app.extensions["mailconnect"]


@blueprint.post("/connect")
def connect():
    services = _services()
    batch = _read_batch(services.settings.max_accounts_per_request)
    submitted = submit_job(services.db, services.cipher, services.clock, g.team_id,
                           batch.records, batch.ignored_columns)
    return _accepted(submitted)


@blueprint.post("/reconnect")
def reconnect():
    """Re-test stored accounts (Saleshandy's reconnect): a job like a bulk connect."""
    services = _services()
    if request.mimetype != "application/json":
        raise ApiError(415, "Content-Type: must be application/json")
    try:
        ids = json.loads(request.get_data())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"body: is not valid JSON ({exc})") from None
    if not isinstance(ids, list) or not ids:
        raise ApiError(422, "body: must be a non-empty JSON array of account ids")
    limit = services.settings.max_accounts_per_request
    if len(ids) > limit:
        raise ApiError(413, f"body: has {len(ids)} ids; at most {limit} per request")
    return _accepted(submit_reconnect(services.db, services.clock, g.team_id, ids))


def _accepted(submitted: SubmittedJob):
    queue = current_app.extensions["mailconnect.queue"]
    try:
        if submitted.needs_probing:
            queue.start_job(submitted.job_id)
        else:
            queue.finish_job(submitted.job_id)
    except Exception:  # the job is committed; the sweeper starts it if this bell is lost
        log.exception("could not publish job %s; the sweeper will pick it up", submitted.job_id)
    return jsonify({
        "message": ACCEPTED_MESSAGE.replace("{requestId}", submitted.job_id),
        "payload": {"requestId": submitted.job_id},
    }), 202


def _read_batch(max_rows: int) -> Batch:
    mimetype = request.mimetype
    try:
        if mimetype == "application/json":
            try:
                payload = json.loads(request.get_data())
            except (ValueError, UnicodeDecodeError) as exc:
                raise ApiError(400, f"body: is not valid JSON ({exc})") from None
            return batch_from_json(payload, max_rows)
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
def connect_status(request_id: str):
    services = _services()
    view = job_view(services.db, g.team_id, request_id)
    if view is None:
        raise ApiError(404, f"requestId: no import {request_id!r} for this team")
    report_url = expires_at = None
    if view.is_completed and view.report_key:
        ttl = services.settings.report_url_ttl_seconds
        try:
            report_url = services.store.download_url(view.report_key, ttl)
        except StorageError as exc:
            log.error("report link for %s: %s", view.job_id, exc)
            raise ApiError(503, "reportURL: the report store cannot sign a link right now; "
                                "retry shortly") from None
        expires_at = services.clock.now() + dt.timedelta(seconds=ttl)
    return jsonify({"payload": {
        "requestId": view.job_id,
        "status": view.status,
        "isCompleted": view.is_completed,
        "total": view.total,
        "processed": view.processed,
        "succeeded": view.succeeded,
        "failed": view.failed,
        "invalid": view.invalid,
        "progress": view.progress,
        "ignoredColumns": view.ignored_columns,
        "error": view.error,
        "createdAt": _iso(view.created_at),
        "startedAt": _iso(view.started_at),
        "completedAt": _iso(view.completed_at),
        "reportURL": report_url,
        "reportExpiresAt": _iso(expires_at),
    }})


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None
