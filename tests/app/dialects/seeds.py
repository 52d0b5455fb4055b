"""The seed documents' own example bodies (/work/shared/seeds/002-004), verbatim."""

from tests.app.importing.test_seeds import SMARTLEAD_REQUEST

# Smartlead's (002) is kept with the other seed-import tests.
SMARTLEAD_SEED = SMARTLEAD_REQUEST

MAILREACH_SEED = {
    "email": "",
    "password": "",
    "first_name": "",
    "last_name": "",
    "provider": "gmail",
    "id": 1,
    "imap_server": "",
    "imap_server_port": 1,
    "imap_server_username": "",
    "imap_server_password": "",
    "smtp_server": "",
    "smtp_server_port": 1,
    "smtp_server_username": "",
    "smtp_server_password": "",
    "smtp_server_auth_type": "plain",
    "smtp_server_starttls": True,
    "smtp_only": True,
    "imap_issue": True,
    "spamchecker_only": True,
    "test": True,
}

LEMLIST_SEED = {
    "sender_name": "John Doe",
    "sender_email": "john@company.com",
    "smtp_host": "smtp.company.com",
    "smtp_port": 587,
    "smtp_login": "john@company.com",
    "smtp_password": "password123",
    "imap_host": "imap.company.com",
    "imap_port": 993,
    "imap_login": "john@company.com",
    "imap_password": "password123",
}
