"""Email service providers: the names every seed API accepts, stored lowercase."""

from __future__ import annotations

# The union of Saleshandy's, Smartlead's, MailReach's and lemlist's provider names.
PROVIDERS: frozenset[str] = frozenset(
    {
        "gmail", "gsuite", "microsoft", "o365", "outlook", "yahoo", "zoho", "godaddy",
        "yandex", "icloud", "aol", "sendgrid", "mailgun", "ses", "smtp", "custom", "other",
    }
)
DEFAULT_PROVIDER = "other"


def normalise_provider(value: str) -> str:
    name = value.strip().lower()
    if name not in PROVIDERS:
        raise ValueError(f"unknown provider {value!r}; use one of {', '.join(sorted(PROVIDERS))}")
    return name
