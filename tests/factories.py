"""Request rows in Saleshandy's bulk shape."""

from __future__ import annotations

from typing import Any


def bulk_row(email: str = "sarah@example.com", **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "emailServiceProvider": "zoho",
        "fromFirstName": "Sarah",
        "fromLastName": "Chen",
        "smtpEmailAddress": email,
        "smtpUserName": email,
        "smtpPassword": "s3cret-smtp",
        "smtpHost": "smtp.example.com",
        "smtpPort": 587,
        "smtpEncryption": "tls",
        "imapEmailAddress": email,
        "imapUserName": email,
        "imapPassword": "s3cret-imap",
        "imapHost": "imap.example.com",
        "imapPort": 993,
        "imapEncryption": "ssl",
    }
    row.update(overrides)
    return {k: v for k, v in row.items() if v is not None}


def mail_row(email: str, password: str, smtp: tuple[int, str], imap: tuple[int, str],
        host: str = "localhost", **extra) -> dict:
    return bulk_row(email, emailServiceProvider="custom", smtpPassword=password,
                    imapPassword=password, smtpHost=host, smtpPort=smtp[0],
                    smtpEncryption=smtp[1], imapHost=host, imapPort=imap[0],
                    imapEncryption=imap[1], **extra)


def single_body(email: str, password: str, smtp: tuple[int, str], imap: tuple[int, str],
           host: str = "localhost", test: bool = False) -> dict:
    def side(port_and_encryption: tuple[int, str]) -> dict:
        port, encryption = port_and_encryption
        return {"emailAddress": email, "userName": email, "password": password, "host": host,
                "port": port, "encryption": encryption}

    return {"emailServiceProvider": "custom", "fromName": "Leak Test", "test": test,
            "payload": {"smtp": side(smtp), "imap": side(imap)}}
