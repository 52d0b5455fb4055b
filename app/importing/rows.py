"""One submitted account row: validated, normalised, and split into settings and secrets.

Field names are Saleshandy's bulk-connect names. Every problem is reported against the field
that has it, so a user can fix their sheet without guessing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    InstanceOf,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)

from app.accounts.autoconfig import Discoverer
from app.accounts.detect import MxResolver, detect_provider
from app.accounts.presets import PRESETS, SMTP_ONLY_PROVIDERS
from app.accounts.providers import DEFAULT_PROVIDER, normalise_provider
from app.credentials import Secret
from app.probe.model import AccountProbe, AuthMethod, Encryption, Endpoint, ProxyTarget
from app.probe.policy import HostPolicy
from app.probe.proxy import parse_proxy_url, proxy_from_secret

_EMAIL = re.compile(r"^[^@\s\"<>,;]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
                       r"(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$")
# Needs a colon: without one, "aaaa" (any length) would pass as an address.
_IPV6_LITERAL = re.compile(r"^\[?[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*\]?$")
MAX_HOST_LENGTH = 253
# C0 controls and DEL. In a user name, CR LF would end the IMAP command or SMTP AUTH line early
# and smuggle in another; in a host name they have no business at all.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

ENCRYPTION_NAMES = {
    "ssl": Encryption.SSL,
    "tls": Encryption.STARTTLS,
    "starttls": Encryption.STARTTLS,
    "none": Encryption.NONE,
    "auto": Encryption.AUTO,
}
# What a port means when the row does not say how to encrypt, and the reverse. On any other
# port the probe detects it (Encryption.AUTO), and the account keeps what it found.
PORT_ENCRYPTION = {
    "smtp": {465: Encryption.SSL, 587: Encryption.STARTTLS, 25: Encryption.STARTTLS,
             2525: Encryption.STARTTLS},
    "imap": {993: Encryption.SSL, 143: Encryption.STARTTLS},
}
ENCRYPTION_PORT = {
    "smtp": {Encryption.SSL: 465, Encryption.STARTTLS: 587, Encryption.NONE: 25},
    "imap": {Encryption.SSL: 993, Encryption.STARTTLS: 143, Encryption.NONE: 143},
}


def _blank_to_none(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


def _no_control(value: Any) -> Any:
    # Checked before blanks are stripped: a trailing tab or line break is refused too, not
    # quietly trimmed, so what is tested is exactly what was given.
    if isinstance(value, str) and (found := _CONTROL.search(value)):
        raise ValueError("must not contain control characters (U+0000 to U+001F or U+007F; "
                         f"found U+{ord(found.group()):04X})")
    return value


NoControl = BeforeValidator(_no_control)


def _email(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 254 or not _EMAIL.match(value):
        raise ValueError("is not a valid email address")
    return value.lower()


def _host(value: Any) -> str:
    if isinstance(value, str) and len(value) > MAX_HOST_LENGTH:
        raise ValueError(f"is too long (at most {MAX_HOST_LENGTH} characters)")
    if not isinstance(value, str) or not (_HOSTNAME.match(value) or _IPV6_LITERAL.match(value)):
        raise ValueError("is not a valid host name")
    return value.strip("[]").rstrip(".").lower()


def _encryption(value: Any) -> Encryption:
    if isinstance(value, str) and value.strip().lower() in ENCRYPTION_NAMES:
        return ENCRYPTION_NAMES[value.strip().lower()]
    raise ValueError("must be one of ssl, tls, starttls, none or auto")


def _provider(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be text")
    return normalise_provider(value)


def _port(value: Any) -> Any:
    # CSV cells arrive as text; "587.0" comes from spreadsheets that saved numbers as floats.
    if isinstance(value, str) and re.fullmatch(r"\d+(\.0+)?", value):
        return int(float(value))
    if isinstance(value, bool):
        raise ValueError("must be a whole number")
    return value


def _unless_blank(parse: Callable[[Any], Any], blank: Any = None) -> BeforeValidator:
    # A blank cell (CSV gives "" for every empty one) means "not given", so the default, a
    # preset or "is required" applies. One validator, because pydantic runs a field's
    # BeforeValidators last to first: separate ones would parse "" before blanking it.
    def validate(value: Any) -> Any:
        value = _blank_to_none(value)
        return blank if value is None else parse(value)
    return BeforeValidator(validate)


def _between(low: int, high: int) -> AfterValidator:
    # Not Field(ge=, le=): on an optional int those raise TypeError for an explicit null.
    def check(value: int | None) -> int | None:
        if value is not None and not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value
    return AfterValidator(check)


# Length limits sit inside the Optional: on the union, pydantic would apply them to None.
Text = Annotated[Annotated[str, Field(max_length=200)] | None, BeforeValidator(_blank_to_none)]
# Host names, user names and the addresses that stand in for a missing user name refuse
# control characters (NoControl is listed last because pydantic runs it first).
Email = Annotated[str, BeforeValidator(_blank_to_none), BeforeValidator(_email), NoControl]
OptionalEmail = Annotated[str | None, _unless_blank(_email), NoControl]
Host = Annotated[str | None, _unless_blank(lambda v: _host(v) if isinstance(v, str) else v),
                 NoControl]
Username = Annotated[Annotated[str, Field(max_length=320)] | None,
                     BeforeValidator(_blank_to_none), NoControl]
Password = Annotated[Annotated[SecretStr, Field(max_length=1024)] | None,
                     BeforeValidator(_blank_to_none)]
# Microsoft's access tokens are JWTs of a few kilobytes.
Token = Annotated[Annotated[SecretStr, Field(max_length=8192)] | None,
                  BeforeValidator(_blank_to_none), NoControl]
Port = Annotated[int | None, _unless_blank(_port), _between(1, 65535)]
EncryptionField = Annotated[Encryption | None, _unless_blank(_encryption),
                            WithJsonSchema({"type": ["string", "null"],
                                            "enum": [*ENCRYPTION_NAMES, None],
                                            "description": "case-insensitive"})]
Provider = Annotated[str, _unless_blank(_provider, blank=DEFAULT_PROVIDER)]
# socks5://, socks5h:// or http://, with optional user:password (kept in a Secret from here on).
# The schema says what a client sends (the URL), not the parsed target it becomes.
ProxyUrl = Annotated[InstanceOf[ProxyTarget] | None, _unless_blank(parse_proxy_url),
                     WithJsonSchema({"type": ["string", "null"], "format": "uri",
                                     "examples": ["socks5://user:pass@203.0.113.7:1080"]})]


def _flag(value: Any) -> Any:
    # CSV cells and other tools' exports spell booleans every which way.
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "yes", "1", "y"):
            return True
        if text in ("false", "no", "0", "n", ""):
            return False
        raise ValueError("must be true or false")
    return value


def _tags(value: Any) -> Any:
    if isinstance(value, str):
        return [tag.strip() for tag in value.split(",") if tag.strip()]
    return value


def _auth(value: Any) -> AuthMethod:
    if isinstance(value, str) and value.strip().lower() in AuthMethod.__members__.values():
        return AuthMethod(value.strip().lower())
    raise ValueError("must be password or oauth2")


OAUTH2_PROVIDERS = ("google", "microsoft", "custom")
# An OAuth provider's mailboxes get the hosts of this preset when the row names none, and the
# reverse: a row of these providers that leaves oauth2Provider out gets it from them.
OAUTH2_PRESET = {"google": "gsuite", "microsoft": "o365"}
OAUTH2_OF_PROVIDER = {"gmail": "google", "gsuite": "google", "microsoft": "microsoft",
                      "o365": "microsoft", "outlook": "microsoft"}
# The keys of an OAuth2 account's credentials dict (CredentialCipher): the tokens, and when
# the access token expires (ISO 8601), so a refresh happens only when it is due.
ACCESS_TOKEN, REFRESH_TOKEN = "oauth2AccessToken", "oauth2RefreshToken"
EXPIRES_AT = "oauth2ExpiresAt"


def _oauth2_provider(value: Any) -> str:
    if isinstance(value, str) and value.strip().lower() in OAUTH2_PROVIDERS:
        return value.strip().lower()
    raise ValueError("must be google, microsoft or custom")


Flag = Annotated[bool | None, BeforeValidator(_flag)]
Count = Annotated[int | None, _unless_blank(_port)]
Tags = Annotated[Annotated[list[Annotated[str, Field(min_length=1, max_length=64)]],
                           Field(max_length=50)] | None,
                 BeforeValidator(_blank_to_none), BeforeValidator(_tags)]

SENDING_FIELDS = ("maxEmailPerDay", "minDelayMinutes", "warmupEnabled", "warmupPerDay",
                  "warmupDailyRampup", "warmupReplyRate", "replyTo", "bcc", "signature", "tags",
                  "suspended")


class BulkRow(BaseModel):
    model_config = ConfigDict(extra="ignore", hide_input_in_errors=True)

    emailServiceProvider: Provider = DEFAULT_PROVIDER
    fromFirstName: Text = None
    fromLastName: Text = None
    fromName: Annotated[Annotated[str, Field(max_length=400)] | None,
                        BeforeValidator(_blank_to_none)] = None

    smtpEmailAddress: Email
    smtpUserName: Username = None
    smtpPassword: Password = None
    smtpHost: Host = None
    smtpPort: Port = None
    smtpEncryption: EncryptionField = None

    imapEmailAddress: OptionalEmail = None
    imapUserName: Username = None
    imapPassword: Password = None
    imapHost: Host = None
    imapPort: Port = None
    imapEncryption: EncryptionField = None
    smtpOnly: Flag = False
    proxyUrl: ProxyUrl = None

    authType: Annotated[AuthMethod, _unless_blank(_auth, blank=AuthMethod.PASSWORD)] = \
        AuthMethod.PASSWORD
    oauth2Provider: Annotated[str | None, _unless_blank(_oauth2_provider)] = None
    oauth2AccessToken: Token = None
    oauth2RefreshToken: Token = None

    maxEmailPerDay: Annotated[Count, _between(1, 100_000)] = None
    minDelayMinutes: Annotated[Count, _between(0, 1440)] = None
    warmupEnabled: Flag = None
    warmupPerDay: Annotated[Count, _between(0, 10_000)] = None
    warmupDailyRampup: Annotated[Count, _between(0, 1000)] = None
    warmupReplyRate: Annotated[Count, _between(0, 100)] = None
    replyTo: OptionalEmail = None
    bcc: OptionalEmail = None
    signature: Annotated[str, Field(max_length=20_000)] | None = None
    tags: Tags = None
    suspended: Flag = None

    # Fields the row left empty and presets or MX detection filled, in the order filled. A tuple
    # default, not default_factory=list: pydantic inspects a factory's signature per instance.
    _filled: tuple[str, ...] = PrivateAttr(default=())
    # The provider is left for a worker to detect from the MX records (see defer_detection).
    _deferred: bool = PrivateAttr(default=False)

    @property
    def tests_imap(self) -> bool:
        return not (self.smtpOnly or self.emailServiceProvider in SMTP_ONLY_PROVIDERS)

    @property
    def needs_detection(self) -> bool:
        # "smtp" and "custom" say the row has its own server, so only "other" (the default
        # when the row names none) is worth a DNS lookup.
        return self.smtpHost is None and self.emailServiceProvider == DEFAULT_PROVIDER

    @model_validator(mode="after")
    def _complete(self, info: ValidationInfo) -> BulkRow:
        errors: list[tuple[str, str]] = self._oauth2()
        context = info.context or {}
        if self.needs_detection:
            if context.get("defer_detection"):
                # The worker looks the MX up and fills the preset: what the preset would fill
                # is not missing yet.
                self._deferred = True
            else:
                errors.extend(self._detect_provider(context.get("mx")))
        elif self.smtpHost is None and self.emailServiceProvider not in PRESETS:
            errors.append(("smtpHost", "is required"))
        self._fill_from_preset()
        if self.smtpPassword is None and self.authType == AuthMethod.PASSWORD:
            errors.append(("smtpPassword", "is required"))
        if self.imapHost is None and self.tests_imap and not self._deferred:
            errors.append(("imapHost", "is required (unless smtpOnly is true)"))
        for protocol in ("smtp", "imap") if self.tests_imap else ("smtp",):
            port_field, enc_field = f"{protocol}Port", f"{protocol}Encryption"
            port, encryption = getattr(self, port_field), getattr(self, enc_field)
            if port is None and encryption is None:
                if not self._deferred:
                    errors.append((port_field, "is required"))
            elif encryption is None:
                setattr(self, enc_field, PORT_ENCRYPTION[protocol].get(port, Encryption.AUTO))
            elif port is None and encryption == Encryption.AUTO:
                errors.append((port_field, "is required when the encryption is to be detected"))
            elif port is None:
                setattr(self, port_field, ENCRYPTION_PORT[protocol][encryption])
        errors.extend(self._refused(context.get("policy") or HostPolicy()))
        if errors:
            raise RowErrors(errors)
        return self

    def _oauth2(self) -> list[tuple[str, str]]:
        tokens = (self.oauth2AccessToken, self.oauth2RefreshToken)
        if self.authType == AuthMethod.PASSWORD:
            return [(name, "is only for authType oauth2")
                    for name, value in (("oauth2AccessToken", tokens[0]),
                                        ("oauth2RefreshToken", tokens[1]))
                    if value is not None]
        errors = []
        if not any(tokens):
            errors.append(("oauth2AccessToken", "is required for authType oauth2 (or "
                                                "oauth2RefreshToken, or both)"))
        if self.oauth2Provider is None:
            self.oauth2Provider = OAUTH2_OF_PROVIDER.get(self.emailServiceProvider)
        if self.oauth2Provider is None and self.oauth2RefreshToken is not None:
            # The refresh goes to the team's OAuth app of this provider.
            errors.append(("oauth2Provider", "is required with oauth2RefreshToken (google, "
                                             "microsoft or custom)"))
        preset = OAUTH2_PRESET.get(self.oauth2Provider or "")
        if preset and self.smtpHost is None and self.emailServiceProvider == DEFAULT_PROVIDER:
            # Google's and Microsoft's mailboxes live on their servers: no MX lookup needed.
            self.emailServiceProvider = preset
            self._filled += ("emailServiceProvider",)
        return errors

    def _refused(self, policy: HostPolicy) -> list[tuple[str, str]]:
        # After presets and inferred ports are in: a filled-in host or port is checked too.
        errors = []
        for protocol in ("smtp", "imap") if self.tests_imap else ("smtp",):
            host, port = getattr(self, f"{protocol}Host"), getattr(self, f"{protocol}Port")
            refusal = host is not None and policy.host_refusal(host)
            if refusal:
                errors.append((f"{protocol}Host", refusal))
            refusal = port is not None and policy.port_refusal(port)
            if refusal:
                errors.append((f"{protocol}Port", refusal))
        # The proxy's port is not a mail port, so only banned hosts apply to it.
        refusal = self.proxyUrl is not None and policy.host_refusal(self.proxyUrl.host)
        if refusal:
            errors.append(("proxyUrl", refusal))
        return errors

    def _detect_provider(self, mx: MxResolver | None) -> list[tuple[str, str]]:
        if mx is None:
            return [("smtpHost", "is required")]
        domain = self.smtpEmailAddress.rpartition("@")[2]
        provider = detect_provider(domain, mx)
        if provider is None:
            return [unrecognised_domain(domain)]
        self.emailServiceProvider = provider
        self._filled += ("emailServiceProvider",)
        return []

    def _fill_from_preset(self) -> None:
        preset = PRESETS.get(self.emailServiceProvider)
        if preset is None:
            return
        for protocol in ("smtp", "imap") if self.tests_imap else ("smtp",):
            server = preset.server(protocol)
            if server is None:
                continue
            host, port, enc = f"{protocol}Host", f"{protocol}Port", f"{protocol}Encryption"
            fills = {host: server.host}
            # Port and encryption go together: given one, the other is inferred from it below,
            # because a preset's half would contradict it (a row's 587 with Gmail's ssl).
            if getattr(self, port) is None and getattr(self, enc) is None:
                fills |= {port: server.port, enc: server.encryption}
            for name, value in fills.items():
                if getattr(self, name) is None:
                    setattr(self, name, value)
                    self._filled += (name,)


class RowErrors(ValueError):
    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{f}: {m}" for f, m in errors))
        self.errors = errors


KNOWN_FIELDS: frozenset[str] = frozenset(BulkRow.model_fields)


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


@dataclass(frozen=True)
class AccountInput:
    """A valid row, ready to test. Passwords stay inside Secret objects."""

    email: str
    provider: str
    from_first_name: str | None
    from_last_name: str | None
    from_name: str | None
    smtp: Endpoint
    smtp_email: str
    imap: Endpoint | None
    imap_email: str | None
    sending: dict[str, Any]  # only the sending settings the row gave
    filled: tuple[str, ...] = ()  # fields the row left empty that presets or DNS filled
    # The provider (and so the servers) is still to be recognised from the domain's MX
    # records: a worker does it (complete_detected), so that intake does no network I/O.
    detect: bool = False
    auth: AuthMethod = AuthMethod.PASSWORD
    oauth2_provider: str | None = None
    # An OAuth2 account's tokens (ACCESS_TOKEN, REFRESH_TOKEN, EXPIRES_AT): its credentials.
    oauth2_tokens: dict[str, Secret] = field(default_factory=dict)

    def settings(self) -> dict[str, Any]:
        """Everything but the passwords, as stored on job rows."""
        settings = {
            "email": self.email,
            "provider": self.provider,
            "fromFirstName": self.from_first_name,
            "fromLastName": self.from_last_name,
            "fromName": self.from_name,
            "smtp": _endpoint_settings(self.smtp, self.smtp_email),
            "imap": _endpoint_settings(self.imap, self.imap_email) if self.imap else None,
            "sending": self.sending,
            "filled": list(self.filled),
        }
        if self.smtp.proxy is not None:
            settings[PROXY] = self.smtp.proxy.display  # the password is in secrets() only
        if self.detect:
            settings[DETECT] = True
        if self.auth == AuthMethod.OAUTH2:
            settings[AUTH] = self.auth.value
            settings[OAUTH2_PROVIDER] = self.oauth2_provider
        return settings

    def with_tokens(self, tokens: dict[str, Secret]) -> AccountInput:
        """This OAuth2 account with refreshed tokens: its endpoints log in with the new
        access token."""
        access = tokens.get(ACCESS_TOKEN, Secret(""))
        return replace(self, oauth2_tokens=tokens, smtp=replace(self.smtp, password=access),
                       imap=self.imap and replace(self.imap, password=access))

    def secrets(self) -> dict[str, Secret]:
        if self.auth == AuthMethod.OAUTH2:
            secrets = dict(self.oauth2_tokens)
        else:
            secrets = {"smtp": self.smtp.password}
            if self.imap:
                secrets["imap"] = self.imap.password
        if self.smtp.proxy is not None:
            secrets[PROXY] = self.smtp.proxy.secret_url()
        return secrets


def _endpoint_settings(endpoint: Endpoint, email: str) -> dict[str, Any]:
    return {
        "email": email,
        "username": endpoint.username,
        "host": endpoint.host,
        "port": endpoint.port,
        # None only on a row whose provider is still to be detected: its preset fills it.
        "encryption": endpoint.encryption and endpoint.encryption.value,
    }


# The settings key marking a job row whose provider a worker must detect from MX records.
DETECT = "detectProvider"
# The proxy's key: in settings its display form (no password), in the encrypted secrets its URL.
PROXY = "proxy"

# Settings keys of an OAuth2 account (absent: a password account).
AUTH, OAUTH2_PROVIDER = "auth", "oauth2Provider"


def is_oauth2(settings: dict[str, Any]) -> bool:
    return settings.get(AUTH) == AuthMethod.OAUTH2


def login_secret(settings: dict[str, Any], secrets: dict[str, Secret], protocol: str
                 ) -> tuple[Secret, AuthMethod]:
    """What a protocol logs in with: its password, or an OAuth2 account's access token."""
    if is_oauth2(settings):
        return secrets.get(ACCESS_TOKEN, Secret("")), AuthMethod.OAUTH2
    return secrets[protocol], AuthMethod.PASSWORD


def unrecognised_domain(domain: str, discovered: bool = False) -> tuple[str, str]:
    sources = "MX records, SRV records or autoconfig file" if discovered else "MX records"
    return ("smtpHost", f"is required (the provider of {domain} could not be recognised from "
                        f"its {sources})")


def complete_detected(settings: dict[str, Any], mx: MxResolver,
                      discoverer: Discoverer | None = None) -> dict[str, Any] | list[FieldError]:
    """A deferred row's settings with its detected provider's servers filled in, or the
    errors that make it invalid (the domain's provider is not one we recognise).

    Fills what the row left out exactly as validation would have, with the same `filled`
    record for the report's filledIn. A domain MX does not recognise is asked by the
    `discoverer` (SRV records, autoconfig file), when there is one.
    """
    domain = settings["email"].rpartition("@")[2]
    provider = detect_provider(domain, mx)
    if provider is None:
        found = discoverer.discover(settings["email"]) if discoverer is not None else None
        if found is None:
            return [FieldError(*unrecognised_domain(domain, discovered=discoverer is not None))]
        completed = found.complete({k: v for k, v in settings.items() if k != DETECT})
        if isinstance(completed, list):
            return [FieldError(*error) for error in completed]
        return completed
    preset = PRESETS[provider]
    completed = {**settings, "provider": provider}
    completed.pop(DETECT, None)
    filled = [*settings.get("filled", []), "emailServiceProvider"]
    for protocol in ("smtp", "imap"):
        server, given = preset.server(protocol), settings.get(protocol)
        if given is None or server is None:
            continue
        endpoint = dict(given)
        fills = {"host": server.host}
        if endpoint["port"] is None and endpoint["encryption"] is None:
            fills |= {"port": server.port, "encryption": server.encryption.value}
        for name, value in fills.items():
            if endpoint[name] is None:
                endpoint[name] = value
                filled.append(f"{protocol}{name.capitalize()}")
        completed[protocol] = endpoint
    completed["filled"] = filled
    return completed


def detected_note(protocol: str, found: Encryption) -> str:
    """The filledIn entry of an encryption the probe detected."""
    return f"{protocol}Encryption={found.value} (detected)"


def detected_notes(probe: AccountProbe) -> list[str]:
    """filledIn entries for what this probe detected (single connect answers with them)."""
    return [detected_note(protocol, result.detected)
            for protocol, result in (("smtp", probe.smtp), ("imap", probe.imap))
            if result.detected is not None]


def record_detected(settings: dict[str, Any], probe: AccountProbe) -> dict[str, Any] | None:
    """The settings with the encryption the probe detected in place of `auto`, and filledIn
    saying so; None when nothing was detected (then nothing changes)."""
    completed: dict[str, Any] | None = None
    for protocol in ("smtp", "imap"):
        given, found = settings.get(protocol), getattr(probe, protocol).detected
        if found is None or given is None or given.get("encryption") != Encryption.AUTO:
            continue
        if completed is None:
            completed = {**settings, "filled": list(settings.get("filled") or [])}
        completed[protocol] = {**given, "encryption": found.value}
        completed["filled"].append(detected_note(protocol, found))
    return completed


def endpoint_from_settings(settings: dict[str, Any], password: Secret,
                           auth: AuthMethod = AuthMethod.PASSWORD,
                           proxy: Secret | None = None) -> Endpoint:
    """`proxy`: the account's stored proxy URL (secrets[PROXY]), if it has one."""
    return Endpoint(
        host=settings["host"],
        port=int(settings["port"]),
        encryption=Encryption(settings["encryption"]),
        username=settings["username"],
        password=password,
        auth=auth,
        proxy=proxy_from_secret(proxy),
    )


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    return isinstance(value, list) and any(_has_nul(item) for item in value)


def validate_row(raw: Any, mx: MxResolver | None = None, defer_detection: bool = False,
                 policy: HostPolicy | None = None) -> AccountInput | list[FieldError]:
    """`mx` looks up the provider of rows that name neither a server nor a provider; without
    it no DNS happens and such rows are invalid. With `defer_detection` no DNS happens either:
    such a row is valid, marked for a worker to detect its provider (complete_detected).
    `policy` (banned hosts, allowed ports) defaults to the production default's."""
    if not isinstance(raw, dict):
        return [FieldError("row", "must be an object of account fields")]
    # NUL cannot travel in SMTP or IMAP credentials (AUTH PLAIN uses it as the separator), and
    # PostgreSQL refuses it in text.
    with_nul = [FieldError(name, "must not contain NUL characters")
                for name, value in raw.items() if name in KNOWN_FIELDS and _has_nul(value)]
    if with_nul:
        return with_nul
    try:
        row = BulkRow.model_validate(raw, context={"mx": mx,
                                                   "defer_detection": defer_detection,
                                                   "policy": policy})
    except ValidationError as exc:
        return _field_errors(exc)
    tokens = {name: Secret(value.get_secret_value()) for name, value in
              ((ACCESS_TOKEN, row.oauth2AccessToken), (REFRESH_TOKEN, row.oauth2RefreshToken))
              if value is not None}
    if row.authType == AuthMethod.OAUTH2:
        smtp_password = imap_password = tokens.get(ACCESS_TOKEN, Secret(""))
    else:
        smtp_password = Secret(row.smtpPassword.get_secret_value())
        imap_password = (
            Secret(row.imapPassword.get_secret_value()) if row.imapPassword else smtp_password
        )
    imap_email = row.imapEmailAddress or row.smtpEmailAddress
    from_name = row.fromName or " ".join(
        part for part in (row.fromFirstName, row.fromLastName) if part
    ) or None
    return AccountInput(
        email=row.smtpEmailAddress,
        provider=row.emailServiceProvider,
        from_first_name=row.fromFirstName,
        from_last_name=row.fromLastName,
        from_name=from_name,
        smtp=Endpoint(row.smtpHost, row.smtpPort, row.smtpEncryption,
                      row.smtpUserName or row.smtpEmailAddress, smtp_password, row.authType,
                      proxy=row.proxyUrl),
        smtp_email=row.smtpEmailAddress,
        imap=Endpoint(row.imapHost, row.imapPort, row.imapEncryption,
                      row.imapUserName or imap_email, imap_password, row.authType,
                      proxy=row.proxyUrl) if row.tests_imap else None,
        imap_email=imap_email if row.tests_imap else None,
        sending=_sending(row),
        filled=row._filled,
        detect=row._deferred,
        auth=row.authType,
        oauth2_provider=row.oauth2Provider,
        oauth2_tokens=tokens if row.authType == AuthMethod.OAUTH2 else {},
    )


def _sending(row: BulkRow) -> dict[str, Any]:
    given = {name: getattr(row, name) for name in SENDING_FIELDS if name in row.model_fields_set}
    return {name: value for name, value in given.items() if value is not None}


_MESSAGES = {
    "missing": "is required",
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "string_type": "must be text",
}


def _field_errors(exc: ValidationError) -> list[FieldError]:
    errors: list[FieldError] = []
    for error in exc.errors(include_input=False, include_url=False):
        field = ".".join(str(part) for part in error["loc"]) or "row"
        kind = error["type"]
        if kind == "value_error" and isinstance(error.get("ctx", {}).get("error"), RowErrors):
            errors.extend(FieldError(f, m) for f, m in error["ctx"]["error"].errors)
            continue
        if kind in _MESSAGES:
            message = _MESSAGES[kind]
        elif kind == "string_too_long":
            message = f"is too long (at most {error['ctx']['max_length']} characters)"
        elif kind == "value_error":
            message = str(error["ctx"]["error"])
        else:
            message = error["msg"].lower()
        errors.append(FieldError(field, message))
    return errors
