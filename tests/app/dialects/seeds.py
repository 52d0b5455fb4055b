"""The seed documents' own example bodies (/work/shared/seeds/002-004), verbatim."""

SMARTLEAD_REQUEST = {
    "from_name": "John Doe",
    "from_email": "john@example.com",
    "user_name": "john@example.com",
    "password": "your_app_password",
    "smtp_host": "smtp.gmail.com",
    "smtp_port": 587,
    "imap_host": "imap.gmail.com",
    "imap_port": 993,
    "warmup_enabled": True,
    "total_warmup_per_day": 20,
    "daily_rampup": 2,
    "max_email_per_day": 50,
    "time_to_wait_in_mins": 5,
    "type": "GMAIL",
}

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
