"""The run's Optuna storage: its URL checked and its database opened before a run starts.

A URL with a scheme SQLAlchemy does not know, a server that refuses the password, or a damaged
`optuna.db` each become one `StorageError` line (exit 2) before the run directory is changed.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["StorageError", "check_url", "check_sqlite_file", "connect", "sqlite_file", "without_password"]

SQLITE_HEADER = b"SQLite format 3\x00"


class StorageError(ValueError):
    """An Optuna storage that cannot be used, as one line naming the URL or file and the fix."""


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a URL too broken to parse is shown as given
        return url


def without_password(url: str) -> str:
    """The URL with its password removed (what run.json keeps; `--resume` gets the password from
    `--storage`, PGPASSWORD or ~/.pgpass)."""
    from sqlalchemy.engine import URL, make_url

    parts = make_url(url)  # URL.set(password=None) keeps the password: None there means "unchanged"
    bare = URL.create(parts.drivername, username=parts.username, host=parts.host, port=parts.port,
                      database=parts.database, query=parts.query)
    return bare.render_as_string(hide_password=False)


def check_url(url: str) -> None:
    """The URL names a database SQLAlchemy can drive (`sqlite:///...`, `postgresql+psycopg://...`)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        make_url(url).get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as err:
        raise StorageError(f"--storage {_redacted(url)}: not a database URL SQLAlchemy can use ({err}); "
                           f"give e.g. sqlite:///path/optuna.db or postgresql+psycopg://user@host/db") from None


def sqlite_file(url: str) -> Path | None:
    """The database file of a `sqlite:///PATH` URL; None for any other URL."""
    prefix = "sqlite:///"
    return Path(url[len(prefix):]) if url.startswith(prefix) else None


def check_sqlite_file(path: Path) -> None:
    """An existing optuna.db is a whole SQLite database (not empty, truncated or garbage)."""
    if not path.exists():
        return
    size = path.stat().st_size
    with path.open("rb") as handle:
        header = handle.read(len(SQLITE_HEADER))
    if size == 0 or header != SQLITE_HEADER:
        what = "is empty" if size == 0 else "is not an SQLite database"
        raise StorageError(f"{path}: {what}; the run's Optuna ledger is damaged — restore it from a copy, "
                           f"or start a new run with --name")


def connect(url: str) -> None:
    """Open the database once (a wrong password, an unreachable server or a malformed file fails here)."""
    import sqlalchemy
    from sqlalchemy.exc import SQLAlchemyError

    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
            if engine.dialect.name == "sqlite":
                ok = conn.exec_driver_sql("PRAGMA quick_check").scalar()
                if ok != "ok":
                    raise StorageError(f"{_redacted(url)}: the SQLite file is damaged ({ok}); restore it from "
                                       f"a copy, or start a new run with --name")
    except SQLAlchemyError as err:
        first = str(getattr(err, "orig", err)).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        database = engine.url.database
        if engine.dialect.name == "sqlite" and database and Path(database).is_file():
            raise StorageError(f"{database}: the SQLite file is damaged ({first}); the run's Optuna ledger "
                               f"cannot be read — restore it from a copy, or start a new run with --name") from None
        hint = ("; it has no password: give it in --storage, or set PGPASSWORD, or put it in ~/.pgpass"
                if engine.url.password is None and engine.dialect.name != "sqlite" else "")
        raise StorageError(f"--storage {_redacted(url)}: cannot open the database ({first}); check the "
                           f"URL, the server and its password{hint}") from None
    finally:
        engine.dispose()
