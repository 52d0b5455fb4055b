"""What the mailbox's owner should do about a verdict: one actionable hint, as data.

Three tables, most specific first:

1. `TEXT_HINTS`: where one code covers situations only the server's words tell apart (Microsoft
   answers 535 5.7.139 both when the tenant switched SMTP AUTH off - a job for its admin - and
   when basic authentication is gone for good - only OAuth helps).
2. `PROVIDER_HINTS`, keyed by (code, provider family): where the fix lives in that provider's
   settings (Google's App Passwords page, Zoho's IMAP switch, ...).
3. `GENERIC_HINTS`: every ErrorCode has one, for providers we know nothing specific about.
"""

from __future__ import annotations

import re

from app.probe.model import ErrorCode

E = ErrorCode

# Provider names as the API stores them (lowercase) -> the family whose hints apply. Names not
# listed here (smtp, custom, other) get the generic hints.
PROVIDER_FAMILIES: dict[str, str] = {
    "gmail": "google",
    "gsuite": "google",
    "microsoft": "microsoft",
    "o365": "microsoft",
    "outlook": "microsoft",
    "yahoo": "yahoo",
    "aol": "yahoo",  # same company, same login service and the same #AUTH005 lockouts
    "zoho": "zoho",
    "yandex": "yandex",
    "icloud": "icloud",
    "godaddy": "godaddy",
    "sendgrid": "sendgrid",
    "mailgun": "mailgun",
    "ses": "ses",
}

GENERIC_HINTS: dict[ErrorCode, str] = {
    E.AUTH_FAILED: (
        "Check the username (usually the full email address) and the password. If the mailbox "
        "uses two-step verification, create an app password and use it instead of the normal one."
    ),
    E.APP_PASSWORD_REQUIRED: (
        "The provider does not accept the account's normal password from mail apps: turn on "
        "two-step verification, create an app password in the account's security settings, "
        "and use it instead."
    ),
    E.WEB_LOGIN_REQUIRED: (
        "The provider blocked this sign-in until someone confirms it: sign in to the webmail "
        "in a browser, approve the sign-in or solve the challenge shown, then test again."
    ),
    E.BASIC_AUTH_DISABLED: (
        "Password sign-in (or IMAP/SMTP access) is switched off for this mailbox: enable it in "
        "the mailbox's settings; if the provider allows only OAuth, connect with OAuth instead."
    ),
    E.OAUTH_TOKEN_INVALID: (
        "The mail server refused the OAuth2 access token: it has expired, was revoked, or lacks "
        "the mail scopes. Get a new token (refresh it, or connect the mailbox again through the "
        "consent flow) for the same email address, with IMAP and SMTP access."
    ),
    E.AUTH_MECHANISM_UNSUPPORTED: (
        "The server accepts no password login on this connection: use encryption ssl or "
        "starttls, and check that the host and port are the provider's ones for mail apps."
    ),
    E.ACCOUNT_LOCKED: (
        "The provider has locked the account, often after too many failed logins: do not retry "
        "(each attempt can extend the lock); wait, unlock it in the webmail, then test once."
    ),
    E.MAILBOX_UNAVAILABLE: (
        "The login worked but the inbox could not be opened: check in the webmail that the "
        "mailbox exists and is active (licensed, not disabled or only shared)."
    ),
    E.TLS_CERTIFICATE_INVALID: (
        "The server's certificate is not valid for this host name (self-signed, expired or "
        "issued for another name): use the server name the provider documents, or ask the mail "
        "host to install a valid certificate."
    ),
    E.TLS_HANDSHAKE_FAILED: (
        "The encryption does not match the port: use ssl for ports 465 and 993, and starttls "
        "for 587, 25 and 143."
    ),
    E.STARTTLS_UNSUPPORTED: (
        "The server does not offer STARTTLS on this port, so the password was not sent: use the "
        "provider's encrypted port (ssl on 465/993, or starttls on 587/143)."
    ),
    E.CONNECTION_REFUSED: (
        "Nothing accepts connections at this host and port: check both against the provider's "
        "settings for mail apps."
    ),
    E.CONNECTION_TIMEOUT: (
        "The server did not answer in time: check the host and port (a firewall may be dropping "
        "the connection); if they are right, the server is slow or busy, so test again later."
    ),
    E.CONNECTION_CLOSED: (
        "The server hung up during the login, often because of a temporary limit: test again "
        "later, and check that the encryption matches the port."
    ),
    E.DNS_NOT_FOUND: (
        "The host name does not exist: check it for typos and use the server name the provider "
        "documents."
    ),
    E.HOST_BLOCKED: (
        "The host name points at a private or internal address, which is never connected to: "
        "use the provider's public server name."
    ),
    E.SERVER_THROTTLED: (
        "The server is limiting connections or logins right now: close other apps connected to "
        "this mailbox, wait a few minutes, then test again."
    ),
    E.PROTOCOL_ERROR: (
        "The server did not speak the expected protocol: check that the SMTP settings point at "
        "the SMTP server and the IMAP settings at the IMAP server (a common mix-up), not at a "
        "POP3 or web port."
    ),
    E.INTERNAL_ERROR: (
        "The test itself failed on our side: test again; if it keeps failing, contact support."
    ),
    E.PROXY_FAILED: (
        "The mail server was never reached: the account's proxy (proxyUrl, or the service's "
        "default proxy) refused the connection, rejected its user name and password, or could "
        "not connect onwards. Check the proxy's address, port, scheme (socks5, socks5h, http) "
        "and credentials, and that it is running and allows connections to mail ports."
    ),
    E.OAUTH_REFRESH_FAILED: (
        "The provider's token endpoint would not give a new access token: if it says "
        "invalid_grant, consent was revoked or the refresh token expired, so reconnect the "
        "mailbox with OAuth; otherwise check the team's OAuth app (mailconnect oauth-app set)."
    ),
}

_GOOGLE_APP_ONLY = (
    "Google no longer accepts the account's normal password from mail apps: turn on 2-Step "
    "Verification, then create an App Password at https://myaccount.google.com/apppasswords and "
    "use it (16 letters, no spaces) instead."
)
_YAHOO_APP_ONLY = (
    "Yahoo and AOL need an app password for mail apps: in the account's security settings, "
    "generate an app password and use it instead of the normal password."
)
_ZOHO_APP_ONLY = (
    "Zoho: with two-factor authentication on, create an application-specific password (Zoho "
    "Accounts > Security > App Passwords) and use it; also enable IMAP access in Zoho Mail "
    "settings, and use the host of your account's data centre (zoho.com, zoho.eu, zoho.in, ...)."
)
_YANDEX_APP_ONLY = (
    "Yandex: enable IMAP in Yandex Mail settings (Email clients), and create an app password "
    "(Yandex ID > Security > App passwords) to use instead of the normal password."
)
_ICLOUD_APP_ONLY = (
    "iCloud Mail needs an app-specific password: with two-factor authentication on, create one "
    "at https://account.apple.com (Sign-In and Security > App-Specific Passwords) and use it, "
    "with the full iCloud email address as the username."
)
_MICROSOFT_OAUTH_ONLY = (
    "Microsoft has turned off password (basic) authentication for this mailbox: only OAuth "
    "works now, and App Passwords do not help. Switch the row to OAuth2 (authType oauth2, "
    "oauth2Provider microsoft) or connect the mailbox through the Microsoft consent flow."
)
_MICROSOFT_SUBMISSION_OAUTH_ONLY = (
    "Exchange Online no longer accepts passwords for SMTP submission (5.7.30): only OAuth2 "
    "works. Switch the row to OAuth2 (authType oauth2, oauth2Provider microsoft) with a token "
    "that has the SMTP.Send scope, or connect the mailbox through the Microsoft consent flow."
)
_NO_OAUTH_MECHANISM = (
    "This server offers no OAuth2 login (XOAUTH2 or OAUTHBEARER) on this connection: check "
    "that the host and port are the provider's OAuth-enabled ones (for example "
    "smtp.office365.com:587, outlook.office365.com:993, smtp.gmail.com, imap.gmail.com), or "
    "connect this mailbox with a password."
)
_MICROSOFT_TENANT_SMTP_AUTH = (
    "SMTP AUTH is disabled for the Microsoft 365 tenant: ask the tenant's admin to enable "
    "Authenticated SMTP for this mailbox in the Microsoft 365 admin center (Users > Active "
    "users > the user > Mail > Manage email apps), or for the whole organisation in the "
    "Exchange admin center."
)
_MICROSOFT_SECURITY_DEFAULTS = (
    "The Microsoft 365 tenant's security defaults or sign-in policies block password sign-in: "
    "connect with OAuth, or ask the tenant's admin to allow SMTP AUTH for this mailbox. App "
    "Passwords do not help."
)

PROVIDER_HINTS: dict[tuple[ErrorCode, str], str] = {
    # --- Google (gmail, gsuite) ---
    (E.APP_PASSWORD_REQUIRED, "google"): _GOOGLE_APP_ONLY,
    (E.AUTH_FAILED, "google"): _GOOGLE_APP_ONLY,
    (E.WEB_LOGIN_REQUIRED, "google"): (
        "Google blocked this sign-in: sign in to Gmail in a browser and confirm the security "
        "alert ('Was this you?'), or allow the sign-in at "
        "https://accounts.google.com/DisplayUnlockCaptcha, then test again. An App Password "
        "avoids this."
    ),
    (E.BASIC_AUTH_DISABLED, "google"): (
        "IMAP is disabled for this Gmail account: enable it in Gmail > Settings > Forwarding "
        "and POP/IMAP. For Google Workspace, the admin must also allow IMAP in the Admin console "
        "(Apps > Google Workspace > Gmail > End User Access)."
    ),
    (E.OAUTH_TOKEN_INVALID, "google"): (
        "Google refused the OAuth2 access token: it has expired (they last about an hour) or "
        "was revoked, or it lacks the https://mail.google.com/ scope. Refresh it, or connect "
        "the mailbox again through the Google consent flow."
    ),
    (E.SERVER_THROTTLED, "google"): (
        "Gmail allows at most 15 IMAP connections per account: close other apps connected to "
        "this mailbox, wait a few minutes, then test again."
    ),
    # --- Microsoft (microsoft, o365, outlook) ---
    (E.BASIC_AUTH_DISABLED, "microsoft"): _MICROSOFT_OAUTH_ONLY,
    (E.OAUTH_TOKEN_INVALID, "microsoft"): (
        "Microsoft refused the OAuth2 access token: it has expired or was revoked, or it lacks "
        "the https://outlook.office.com/IMAP.AccessAsUser.All and SMTP.Send scopes, or SMTP "
        "AUTH is off for the mailbox. Refresh it or connect the mailbox again; the tenant's "
        "admin may have to allow SMTP AUTH for it."
    ),
    (E.AUTH_FAILED, "microsoft"): (
        "Microsoft rejected the login: check the password. If it is right, SMTP AUTH or IMAP is "
        "off for the mailbox: ask the Microsoft 365 admin to enable Authenticated SMTP and IMAP "
        "for it (admin center > Users > Active users > Mail > Manage email apps)."
    ),
    (E.MAILBOX_UNAVAILABLE, "microsoft"): (
        "The login worked but Exchange Online has no usable mailbox for it: check that the user "
        "has an Exchange Online licence and that this is not a shared mailbox without sign-in."
    ),
    # --- Yahoo and AOL ---
    (E.APP_PASSWORD_REQUIRED, "yahoo"): _YAHOO_APP_ONLY,
    (E.AUTH_FAILED, "yahoo"): _YAHOO_APP_ONLY,
    (E.ACCOUNT_LOCKED, "yahoo"): (
        "Yahoo has blocked logins after too many failed attempts (#AUTH005): do not retry, as "
        "each attempt extends the block. Wait several hours, then test once with an app password."
    ),
    # --- Zoho ---
    (E.AUTH_FAILED, "zoho"): _ZOHO_APP_ONLY,
    (E.APP_PASSWORD_REQUIRED, "zoho"): _ZOHO_APP_ONLY,
    (E.BASIC_AUTH_DISABLED, "zoho"): (
        "Zoho: enable IMAP access in Zoho Mail > Settings > Mail Accounts > IMAP Access, then "
        "test again."
    ),
    # --- Yandex ---
    (E.AUTH_FAILED, "yandex"): _YANDEX_APP_ONLY,
    (E.APP_PASSWORD_REQUIRED, "yandex"): _YANDEX_APP_ONLY,
    (E.BASIC_AUTH_DISABLED, "yandex"): _YANDEX_APP_ONLY,
    # --- iCloud ---
    (E.AUTH_FAILED, "icloud"): _ICLOUD_APP_ONLY,
    (E.APP_PASSWORD_REQUIRED, "icloud"): _ICLOUD_APP_ONLY,
    # --- GoDaddy: either its own Workspace Email or Microsoft 365 sold by GoDaddy ---
    (E.AUTH_FAILED, "godaddy"): (
        "GoDaddy: Microsoft 365 mailboxes use smtp.office365.com and outlook.office365.com and "
        "need SMTP Authentication turned on in GoDaddy's Email & Office Dashboard; Workspace "
        "Email uses smtpout.secureserver.net and imap.secureserver.net."
    ),
    (E.BASIC_AUTH_DISABLED, "godaddy"): (
        "GoDaddy (Microsoft 365): password sign-in is off for this mailbox; turn on SMTP "
        "Authentication in GoDaddy's Email & Office Dashboard, or connect with OAuth."
    ),
    # --- Sending services: their SMTP passwords are not the account's password ---
    (E.AUTH_FAILED, "sendgrid"): (
        "SendGrid: the username must be literally 'apikey' and the password a SendGrid API key "
        "with Mail Send permission."
    ),
    (E.AUTH_FAILED, "mailgun"): (
        "Mailgun: use the domain's SMTP credentials (Domain settings > SMTP credentials, e.g. "
        "postmaster@your-domain), not the account password or an API key."
    ),
    (E.AUTH_FAILED, "ses"): (
        "Amazon SES: use SES SMTP credentials (SES console > SMTP settings), not an IAM access "
        "key, with the SMTP endpoint of the region they were created in."
    ),
}

# (code, pattern on the server's message, hint): the server's words decide, whatever provider
# the row claims (a GoDaddy or "custom" mailbox can be a Microsoft 365 tenant).
TEXT_HINTS: tuple[tuple[ErrorCode, re.Pattern[str], str], ...] = (
    (E.BASIC_AUTH_DISABLED, re.compile(r"SmtpClientAuthentication is disabled", re.I),
     _MICROSOFT_TENANT_SMTP_AUTH),
    (E.BASIC_AUTH_DISABLED,
     re.compile(r"security defaults|did not meet the criteria to be authenticated", re.I),
     _MICROSOFT_SECURITY_DEFAULTS),
    (E.BASIC_AUTH_DISABLED, re.compile(r"basic authentication is disabled", re.I),
     _MICROSOFT_OAUTH_ONLY),
    (E.BASIC_AUTH_DISABLED, re.compile(r"basic authentication is not supported", re.I),
     _MICROSOFT_SUBMISSION_OAUTH_ONLY),
    (E.AUTH_MECHANISM_UNSUPPORTED, re.compile(r"no OAuth2 \w+ mechanism", re.I),
     _NO_OAUTH_MECHANISM),
)


def provider_family(provider: str | None) -> str | None:
    """'O365 ' -> 'microsoft'; None for providers without hints of their own."""
    return PROVIDER_FAMILIES.get((provider or "").strip().lower())


def hint_for(
    code: ErrorCode | str | None, provider: str | None, message: str | None = None
) -> str | None:
    """What to do about a verdict; None for success or a code this version does not know.

    message is the stored error text (ProtocolResult.error); it picks the hint where one code
    covers several situations.
    """
    if code is None:
        return None
    try:
        error_code = ErrorCode(code)
    except ValueError:  # e.g. a code stored by a newer version, read back by an older one
        return None
    if message:
        for hint_code, pattern, hint in TEXT_HINTS:
            if hint_code == error_code and pattern.search(message):
                return hint
    family = provider_family(provider)
    if family is not None and (error_code, family) in PROVIDER_HINTS:
        return PROVIDER_HINTS[(error_code, family)]
    return GENERIC_HINTS[error_code]
