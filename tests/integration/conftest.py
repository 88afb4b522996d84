"""Real components for integration tests: PostgreSQL and the Tansu broker.

PostgreSQL is the embedded server (started once per session), or — when
``LALIN_DATABASE__URL`` is set — the server it names; either way each test gets a fresh
database cloned from a migrated template, dropped afterwards. Each test gets its own Tansu
broker (it starts in well under a second), so topics and offsets never leak between tests.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from infra import db
from infra.embedded.broker import TansuBroker
from infra.embedded.postgres import EmbeddedPostgres
from infra.settings import DatabaseSettings, KafkaSettings, LoopSettings, RuntimeSettings, Settings


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """URL of a database on the PostgreSQL server under test, for creating test databases."""
    external = os.environ.get("LALIN_DATABASE__URL")
    if external:
        yield external
        return
    # Outside pytest's base temp: the server runs as another user, and each pytest session makes its base temp's
    # parent private again (mode 0700), which would lock a concurrent session's server out of its cluster.
    cluster = Path(tempfile.mkdtemp(prefix="lalin-test-pg-"))
    server = EmbeddedPostgres(cluster / "data", database="lalin_admin")
    server.start()
    try:
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(cluster, ignore_errors=True)


def _create_database(admin_url: str, name: str, template: str | None = None) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            statement = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template))
        conn.execute(statement)
    return make_conninfo(admin_url, dbname=name)


def _drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def template_database(pg_admin_url: str) -> Iterator[str]:
    """A migrated database used as the template of every test database."""
    name = f"lalin_tmpl_{uuid.uuid4().hex[:10]}"
    db.migrate(_create_database(pg_admin_url, name))
    try:
        yield name
    finally:
        _drop_database(pg_admin_url, name)


@pytest.fixture
def database_url(pg_admin_url: str, template_database: str) -> Iterator[str]:
    """A fresh, migrated archive database for one test."""
    name = f"lalin_test_{uuid.uuid4().hex[:10]}"
    url = _create_database(pg_admin_url, name, template=template_database)
    try:
        yield url
    finally:
        _drop_database(pg_admin_url, name)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[TansuBroker]:
    """A Tansu broker of this test's own."""
    tansu = TansuBroker(tmp_path / "tansu.log")
    tansu.start()
    try:
        yield tansu
    finally:
        tansu.stop()


@pytest.fixture
def settings(broker: TansuBroker, database_url: str, tmp_path: Path) -> Settings:
    """Settings pointing at this test's broker and database."""
    return Settings(kafka=KafkaSettings(bootstrap=broker.bootstrap, broker_check_interval_s=0.5),
                    database=DatabaseSettings(url=database_url),
                    runtime=RuntimeSettings(data_dir=tmp_path / "lalin", summary_interval_s=1.0),
                    loop=LoopSettings(enabled=False))  # tests of the runtime's parts; the loop has its own


@pytest.fixture(scope="session")
def vms_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A site PKI (CA, board and central certificates, users) made once per session: key generation is slow."""
    from devices.pki import init_pki

    directory = tmp_path_factory.mktemp("pki") / "pki"
    init_pki(directory)
    return directory


@pytest.fixture(scope="session")
def opcua_address_space(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """OPC UA's standard address space cached once per session: an asyncua server then starts in
    ~0.05 s instead of ~1 s."""
    import asyncio

    from devices.opcua_server import prepare_address_space_cache

    return asyncio.run(prepare_address_space_cache(tmp_path_factory.mktemp("opcua")))
