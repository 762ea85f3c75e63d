"""Alembic environment for tether's metadata schema.

tether runs migrations itself (``SqlMetadataRepository(url, create=True)``) and hands over its
open connection in ``config.attributes["connection"]``, already inside a write transaction, so
the upgrade commits or rolls back with it. Without one (the ``alembic`` command line, used when
writing a new revision), the URL comes from the ``sqlalchemy.url`` option.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from tether.meta.sql import METADATA, VERSION_TABLE

config = context.config


def _run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=METADATA,
        version_table=VERSION_TABLE,
        # SQLite can alter little in place: later revisions rebuild tables in "batch" mode.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_offline() -> None:
    """Emit the SQL instead of running it (``alembic upgrade --sql``), e.g. for a DBA to review."""
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=METADATA,
        version_table=VERSION_TABLE,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_online() -> None:
    given = config.attributes.get("connection")
    if given is not None:
        _run_on(given)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("tether migrations need a connection or the sqlalchemy.url option")
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            _run_on(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    _run_offline()
else:
    _run_online()
