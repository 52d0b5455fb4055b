"""`mailconnect`: database migrations, API keys, the embedded development service, and a
client of a running service (`import`, `status`, `accounts list`)."""

from __future__ import annotations

import json
import logging
import sys
from contextlib import contextmanager
from pathlib import Path

import click

from app.config import ConfigError, load_settings


@click.group()
def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply migrations (the Procfile's release step)."""
    from app.migrate import upgrade

    upgrade(_settings().sqlalchemy_url, revision)
    click.echo(f"database is at {revision}", err=True)


@main.group("api-key")
def api_key() -> None:
    """API keys."""


@api_key.command("create")
@click.option("--team", required=True, help="Team name; created if it does not exist.")
def api_key_create(team: str) -> None:
    """Create a key for TEAM. The key is printed once, as the last line of stdout."""
    from app.clock import SystemClock
    from app.db import Database
    from app.teams import create_api_key

    issued = create_api_key(Database(_settings().sqlalchemy_url), SystemClock(), team)
    click.echo(f"team: {issued.team_name} (id {issued.team_id})")
    click.echo(issued.key)


@api_key.command("list")
@click.option("--team", required=True, help="Team name.")
def api_key_list(team: str) -> None:
    """One line per key of TEAM: its prefix, created, last used, revoked. Never the key."""
    from app.db import Database
    from app.jobs.status import iso
    from app.teams import list_api_keys

    db = Database(_settings().sqlalchemy_url)
    keys = list_api_keys(db, _team_id(db, team))
    if not keys:
        click.echo(f"team {team} has no API keys", err=True)
    for key in keys:
        line = (f"{key.prefix}  created {iso(key.created_at)}"
                f"  last used {iso(key.last_used_at) or 'never'}")
        if key.revoked_at is not None:
            line += f"  revoked {iso(key.revoked_at)}"
        click.echo(line)


@api_key.command("revoke")
@click.argument("key_or_prefix")
def api_key_revoke(key_or_prefix: str) -> None:
    """Revoke a key, given whole or by the prefix `api-key list` prints. It is refused within
    a second by every web process. Revoking a revoked key changes nothing."""
    from app.clock import SystemClock
    from app.db import Database
    from app.jobs.status import iso
    from app.teams import AmbiguousKeyPrefix, KeyNotFound, revoke_api_key

    try:
        done = revoke_api_key(Database(_settings().sqlalchemy_url), SystemClock(),
                              key_or_prefix.strip())
    except KeyNotFound:
        # The argument may be a whole key: never echo it.
        raise click.ClickException("no API key has that key or prefix") from None
    except AmbiguousKeyPrefix as exc:
        raise click.ClickException(
            f"prefix {exc.prefix} matches {exc.matches} keys; revoke with the whole key"
        ) from None
    if done.already_revoked:
        click.echo(f"{done.prefix} (team {done.team_name}) was already revoked at "
                   f"{iso(done.revoked_at)}")
    else:
        click.echo(f"revoked {done.prefix} (team {done.team_name})")


@main.group("webhook-url")
def webhook_url() -> None:
    """A team's default webhook URL (a job's callbackUrl overrides it)."""


@webhook_url.command("set")
@click.option("--team", required=True, help="Team name.")
@click.argument("url")
def webhook_url_set(team: str, url: str) -> None:
    """Send TEAM's job webhooks to URL; an empty URL ("") removes the default."""
    from app.db import Database
    from app.jobs.webhooks import check_callback_url
    from app.teams import set_callback_url

    if url:
        try:
            check_callback_url(url)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="URL") from None
    db = Database(_settings().sqlalchemy_url)
    set_callback_url(db, _team_id(db, team), url or None)
    click.echo(f"team {team}: webhook URL {'set' if url else 'removed'}")


@main.group("webhook-secret")
def webhook_secret() -> None:
    """The secret that signs a team's webhooks."""


@webhook_secret.command("show")
@click.option("--team", required=True, help="Team name.")
def webhook_secret_show(team: str) -> None:
    """Print TEAM's signing secret (created on first use) as the last line of stdout."""
    from app.db import Database
    from app.teams import webhook_secret as team_secret

    settings = _settings()
    db = Database(settings.sqlalchemy_url)
    secret = team_secret(db, settings.credential_cipher(), _team_id(db, team))
    click.echo(f"team: {team}")
    click.echo(secret.reveal())


@main.group("oauth-app")
def oauth_app() -> None:
    """Each team's own OAuth application per provider, which refreshes its mailboxes' tokens."""


@oauth_app.command("set")
@click.option("--team", required=True, help="Team name.")
@click.option("--provider", required=True, type=click.Choice(["google", "microsoft", "custom"]))
@click.option("--client-id", required=True)
@click.option("--client-secret", required=True, help="Stored encrypted; never printed.")
@click.option("--tenant", default=None, help="Microsoft tenant (default: common).")
@click.option("--token-url", default=None, help="Default: the provider's.")
@click.option("--authorize-url", default=None, help="Default: the provider's.")
def oauth_app_set(team: str, provider: str, client_id: str, client_secret: str,
                  tenant: str | None, token_url: str | None, authorize_url: str | None) -> None:
    """Register TEAM's OAuth app of PROVIDER, replacing the one it had."""
    from app.clock import SystemClock
    from app.credentials import Secret
    from app.db import Database
    from app.oauth.apps import set_oauth_app

    settings = _settings()
    db = Database(settings.sqlalchemy_url)
    try:
        app = set_oauth_app(db, settings.credential_cipher(), SystemClock(), _team_id(db, team),
                            provider, client_id, Secret(client_secret), tenant=tenant,
                            token_url=token_url, authorize_url=authorize_url)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"team {team}: OAuth app for {provider} set (client id {app.client_id}, "
               f"token URL {app.token_url})")


@main.group()
def credentials() -> None:
    """Stored secrets: mailbox passwords and webhook signing secrets."""


@credentials.command("rotate")
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=500, show_default=True,
              help="Rows re-encrypted per transaction.")
def credentials_rotate(batch_size: int) -> None:
    """Re-encrypt every stored secret under the first key of CREDENTIALS_KEYS.

    Safe while the service runs, and resumable: run it again after an interruption and it
    finishes the rest. Progress goes to stderr after each batch, the summary to stdout. Exits
    1 when some secret cannot be decrypted with any configured key (their ids are listed,
    never a value) or kept changing under the run (run it again).
    """
    from app.credentials_rotation import rotate_credentials
    from app.db import Database

    settings = _settings()
    summary = rotate_credentials(Database(settings.sqlalchemy_url),
                                 settings.credential_cipher(), batch_size=batch_size,
                                 on_batch=lambda progress: click.echo(progress.line(), err=True))
    for column in summary.columns:
        click.echo(column.summary())
        if column.failed:
            click.echo(column.failed_line(), err=True)
    if not summary.complete:
        sys.exit(1)
    click.echo("every stored secret is under the first key of CREDENTIALS_KEYS")


def _team_id(db, team: str) -> int:
    from app.teams import UnknownTeam, team_id_by_name

    try:
        return team_id_by_name(db, team)
    except UnknownTeam:
        raise click.ClickException(f"no team named {team!r}") from None


def _service_options(command):
    """--url and --api-key (or MAILCONNECT_URL and MAILCONNECT_API_KEY): a running service."""
    from app.client.http import DEFAULT_URL

    command = click.option(
        "--api-key", envvar="MAILCONNECT_API_KEY", required=True, show_envvar=True,
        help="The team's API key (never printed).")(command)
    return click.option(
        "--url", envvar="MAILCONNECT_URL", default=DEFAULT_URL, show_default=True,
        show_envvar=True, callback=_check_url, help="The service's base URL.")(command)


def _check_url(_ctx, _param, value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise click.BadParameter("must start with http:// or https://")
    return value


@contextmanager
def _service(url: str, api_key: str):
    """A client of the service; a refusal or an unreachable service ends the command with
    the server's message and exit code 2, never a traceback."""
    from app.client.http import ServiceClient, ServiceError
    from app.client.results import EXIT_ERROR
    from app.credentials import Secret

    # httpx logs every request at INFO: a line per poll, and the presigned links in full.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    client = ServiceClient(url, Secret(api_key))
    try:
        yield client
    except ServiceError as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(EXIT_ERROR)
    finally:
        client.close()


@main.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--wait", is_flag=True,
              help="Follow the job to its end, then print its errors and download its files.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout instead.")
@_service_options
def import_file(file: Path, wait: bool, as_json: bool, url: str, api_key: str) -> None:
    """Submit FILE (CSV, or a JSON array) as a bulk connect.

    Without --wait, prints the requestId. With --wait, shows the progress, then a table of
    errors by code with hints, and saves the report (and the failed-rows file) next to FILE:
    FILE.report.csv, FILE.failed-rows.csv. Exit codes: 0 every row verified, 1 some rows
    failed (or were invalid or cancelled), 2 usage or HTTP error.
    """
    from app.client.http import Upload

    with _service(url, api_key) as client:
        request_id = client.submit(Upload.of(file))
        if not wait:
            click.echo(json.dumps({"requestId": request_id}) if as_json else request_id)
            return
        sys.exit(_follow_to_end(client, request_id, file, as_json))


@main.command()
@click.argument("request_id")
@click.option("--wait", is_flag=True, help="Follow the job to its end.")
@click.option("--download", "download_dir", default=None,
              type=click.Path(file_okay=False, writable=True, path_type=Path),
              help="Once ended, save its files here as REQUEST_ID.report.csv, ...")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout instead.")
@_service_options
def status(request_id: str, wait: bool, download_dir: Path | None, as_json: bool, url: str,
           api_key: str) -> None:
    """Show an import's status. Exit codes as `import --wait` once the job has ended, 0 while
    it runs."""
    from app.client.results import exit_code

    with _service(url, api_key) as client:
        if wait:
            beside = (download_dir / request_id) if download_dir else None
            sys.exit(_follow_to_end(client, request_id, beside, as_json))
        current = client.status(request_id)
        if not current.get("isCompleted"):
            _show_status(current, {}, as_json)
            return
        beside = (download_dir / request_id) if download_dir else None
        _show_status(current, _files(client, current, beside), as_json)
        sys.exit(exit_code(current))


def _follow_to_end(client, request_id: str, beside: Path | None, as_json: bool) -> int:
    from rich.console import Console

    from app.client.render import ProgressView
    from app.client.results import exit_code
    from app.client.watch import follow

    try:
        with ProgressView(Console(stderr=True), request_id) as progress:
            final = follow(client, request_id, progress.update)
    except KeyboardInterrupt:
        click.echo(f"\nstopped watching; the import goes on: mailconnect status {request_id} "
                   "--wait", err=True)
        return 130
    _show_status(final, _files(client, final, beside), as_json)
    return exit_code(final)


def _files(client, status: dict, beside: Path | None) -> dict[str, Path]:
    from app.client.results import download_files

    if beside is None or not status.get("isCompleted"):
        return {}
    beside.parent.mkdir(parents=True, exist_ok=True)
    return download_files(client, status, beside)


def _show_status(status: dict, files: dict[str, Path], as_json: bool) -> None:
    from rich.console import Console

    from app.client.render import errors_table, files_lines, summary_lines
    from app.client.results import code_hints

    errors = status.get("errorsByCode") or {}
    hints = code_hints(errors, files.get("report"))
    if as_json:
        click.echo(json.dumps({"status": status, "hints": hints,
                               "files": {kind: str(path) for kind, path in files.items()}}))
        return
    console = Console()
    for line in summary_lines(status):
        console.print(line, highlight=False, soft_wrap=True)
    if errors:
        console.print(errors_table(errors, hints))
    for line in files_lines(files):
        console.print(line, highlight=False, soft_wrap=True)


@main.group()
def accounts() -> None:
    """The team's email accounts, on a running service."""


@accounts.command("list")
@click.option("--status", "account_status", type=click.IntRange(0, 1), default=None,
              help="1: connected, 0: not (the API's status).")
@click.option("--page", type=click.IntRange(1), default=None, help="Default: 1.")
@click.option("--limit", type=click.IntRange(1, 200), default=None, help="Default: 50.")
@click.option("--json", "as_json", is_flag=True, help="Print the API's payload as JSON.")
@_service_options
def accounts_list(account_status: int | None, page: int | None, limit: int | None,
                  as_json: bool, url: str, api_key: str) -> None:
    """One page of the team's accounts, as a table."""
    from rich.console import Console

    from app.client.render import accounts_table

    with _service(url, api_key) as client:
        payload = client.accounts(page=page, limit=limit, status=account_status)
    if as_json:
        click.echo(json.dumps(payload))
    else:
        Console().print(accounts_table(payload))


@main.command()
@click.option("--port", type=int, default=None, help="API port (default: $PORT or 8000).")
def dev(port: int | None) -> None:
    """Run the whole service in the foreground: SQLite, Redis, local S3, web, worker, beat."""
    from app.devserver import run_dev

    sys.exit(run_dev(port))


def _settings():
    try:
        return load_settings()
    except ConfigError as exc:
        raise click.ClickException(f"configuration: {exc}") from None


if __name__ == "__main__":
    main()
