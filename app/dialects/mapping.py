"""What every dialect shares: a vendor body mapped onto our record, and our field errors named
back in the vendor's own field names."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from app.importing.rows import FieldError


@dataclass(frozen=True)
class Dialect:
    """One vendor's request fields and how they land on ours."""

    name: str
    # Vendor field -> the fields of ours it fills. A field filling several (Smartlead's single
    # `password`) fills only what no field of one target gave: `imap_password` beats it.
    fields: Mapping[str, tuple[str, ...]]
    required: tuple[str, ...]
    # Vendor yes/no fields naming an encryption: what "yes" means. "No" leaves the encryption
    # to be inferred from the port, as our own rows do.
    flags: Mapping[str, str] = field(default_factory=dict)
    # Vendor fields with a closed set of values: vendor value (case-insensitive) -> ours.
    choices: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # Fields of ours every record of this vendor gets (lemlist's accounts are all `custom`).
    fixed: Mapping[str, Any] = field(default_factory=dict)

    def vendor_name(self, ours: str) -> str:
        """The vendor's field for one of ours: the one that fills only it, else any."""
        candidates = [name for name, targets in self.fields.items() if ours in targets]
        single = [name for name in candidates if len(self.fields[name]) == 1]
        return (single or candidates or [ours])[0]


@dataclass(frozen=True)
class Mapped:
    record: dict[str, Any]  # our single-connect record, for validate_row
    # Fields we have no use for (warmup tuning, OAuth tokens, test flags) and unknown ones:
    # accepted, and reported back as ignored.
    ignored: list[str]
    sources: dict[str, str]  # our field -> the vendor field its value came from


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def to_record(dialect: Dialect, body: Any) -> Mapped | list[FieldError]:
    """The vendor's body as our record, or the vendor-named errors that stop it earlier
    (not an object, a required field missing, a yes/no or a choice that is neither)."""
    if not isinstance(body, dict):
        return [FieldError("body", "must be a JSON object")]
    errors = [FieldError(name, "is required") for name in dialect.required
              if _blank(body.get(name))]
    record: dict[str, Any] = dict(dialect.fixed)
    sources: dict[str, str] = {}
    ignored: list[str] = []
    # Fields filling several of ours first, so that a field of one target overrides them.
    ordered = sorted(body, key=lambda name: len(dialect.fields.get(name, ())) == 1)
    for name in ordered:
        value = body[name]
        targets = dialect.fields.get(name)
        if targets is None:
            ignored.append(name)
            continue
        if name in dialect.flags:
            if value is None:
                continue
            if not isinstance(value, bool):
                errors.append(FieldError(name, "must be true or false"))
                continue
            if not value:
                continue  # "no": the port says which encryption
            value = dialect.flags[name]
        elif name in dialect.choices and not _blank(value):
            allowed = dialect.choices[name]
            if not isinstance(value, str) or value.strip().lower() not in allowed:
                errors.append(FieldError(name, f"must be one of {', '.join(allowed)}"))
                continue
            value = allowed[value.strip().lower()]
        for target in targets:
            if len(targets) > 1 and target in sources:
                continue
            if len(targets) == 1 and _blank(value) and target in sources:
                continue  # a blank imap_password keeps what `password` gave
            record[target] = value
            sources[target] = name
    if errors:
        return errors
    return Mapped(record, sorted(set(ignored), key=ignored.index), sources)


def vendor_errors(dialect: Dialect, mapped: Mapped | None,
                  errors: list[FieldError]) -> list[FieldError]:
    """Our validation's errors, each naming the vendor field the client sent (or would send)."""
    named = []
    for error in errors:
        ours = error.field.split(".")[0]  # tags.0 is tags
        vendor = (mapped.sources.get(ours) if mapped else None) or dialect.vendor_name(ours)
        named.append(FieldError(vendor, error.message))
    return named


def message_of(errors: list[FieldError]) -> str:
    """"field: what is wrong; ...", the one-line form every error message takes."""
    return "; ".join(f"{e.field}: {e.message}" for e in errors)


def ok_false_body(message: str, errors: list[FieldError] | None = None) -> dict[str, Any]:
    """An error in the `{"ok": false, "message"}` shape, with each field's error listed."""
    body: dict[str, Any] = {"ok": False, "message": message}
    if errors:
        body["errors"] = [e.as_dict() for e in errors]
    return body


def protocols_ok(view: Mapping[str, Any]) -> tuple[bool | None, bool | None]:
    """Whether the stored account's SMTP and IMAP logins succeeded (None: not tested)."""
    def ok(protocol: str) -> bool | None:
        result = view[f"{protocol}Connection"]["result"]
        return None if result in (None, "skipped") else result == "ok"
    return ok("smtp"), ok("imap")


def detail(view: Mapping[str, Any], ignored: list[str], filled: list[str]) -> dict[str, Any]:
    """What mailconnect adds to every vendor answer, under `mailconnect`: our status, each
    protocol's result with its error code and hint, and what was ignored or filled in."""
    return {"id": view["id"], "status": view["status"],
            "smtpConnection": view["smtpConnection"], "imapConnection": view["imapConnection"],
            "ignoredFields": ignored, "filledIn": filled}


# Login failures that the password (or the account's settings at the provider) must fix; any
# other failure is about reaching the server.
_LOGIN_CODES = frozenset({"auth_failed", "app_password_required", "web_login_required",
                          "basic_auth_disabled", "account_locked", "auth_mechanism_unsupported",
                          "oauth_token_invalid"})


def failed_fields(dialect: Dialect, view: Mapping[str, Any]) -> list[FieldError]:
    """Each failed protocol of a stored account as an error on the vendor field to fix: its
    password for a refused login, else its host."""
    errors = []
    for protocol in ("smtp", "imap"):
        result = view[f"{protocol}Connection"]
        if result["result"] != "failed":
            continue
        ours = f"{protocol}Password" if result["errorCode"] in _LOGIN_CODES else f"{protocol}Host"
        errors.append(FieldError(dialect.vendor_name(ours),
                                 f"{protocol.upper()} {result['errorCode']}: {result['error']}"))
    return errors
