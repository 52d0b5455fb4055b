"""`mailconnect`: database migrations, API keys, and the embedded development service."""

from __future__ import annotations

import logging
import sys

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
