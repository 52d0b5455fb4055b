from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from app.db import Database
from app.migrate import downgrade, upgrade
from app.models import Base


def test_the_migrated_schema_is_the_models(database_url):
    """What `alembic revision --autogenerate` would write: nothing."""
    engine = Database(database_url).engine
    try:
        with engine.connect() as connection:
            assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    finally:
        engine.dispose()


def test_api_key_lifecycle_migration_goes_down_and_up(tmp_path):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url)
    downgrade(url, "0004")
    engine = Database(url).engine
    columns = {c["name"] for c in inspect(engine).get_columns("api_keys")}
    assert not {"last_used_at", "revoked_at"} & columns
    engine.dispose()
    upgrade(url)
    engine = Database(url).engine
    columns = {c["name"] for c in inspect(engine).get_columns("api_keys")}
    assert {"last_used_at", "revoked_at"} <= columns
    engine.dispose()
