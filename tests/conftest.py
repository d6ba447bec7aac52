"""Session fixtures: the real broker and store, started once.

Unless ``KAFKA_BOOTSTRAP_SERVERS`` / ``MONGODB_URL`` point at servers, the tests start their own
Kafka and FerretDB (on its PostgreSQL) in ``.run/test`` on their own ports (so a running ``make up`` is left alone) and
wipe them first, so every run starts from empty topics. There is no skip: a missing server fails.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TEST_RUN_DIR = ROOT / ".run" / "test"

# Set before any test module is collected: ``deploy.local.infra`` reads them when first imported, and
# several test modules import it, so set later they would leave the tests on a running ``make up``'s
# directory and ports (which the session wipes).
os.environ.setdefault("CARECRM_RUN_DIR", str(TEST_RUN_DIR))
os.environ.setdefault("CARECRM_KAFKA_PORT", "19092")
os.environ.setdefault("CARECRM_KAFKA_CONTROLLER_PORT", "19093")
os.environ.setdefault("CARECRM_FERRETDB_PORT", "27019")
os.environ.setdefault("CARECRM_POSTGRES_PORT", "27439")
if os.environ.get("MONGODB_URL"):
    os.environ["CARECRM_EXTERNAL_STORE"] = "1"  # no embedded PostgreSQL whose counters tests could read


def _start_infra() -> dict[str, str]:
    external = {k: os.environ[k] for k in ("KAFKA_BOOTSTRAP_SERVERS", "MONGODB_URL") if os.environ.get(k)}
    if len(external) == 2:
        return external
    from deploy.local import infra

    if not os.environ.get("CARECRM_KEEP_TEST_DATA"):
        infra.down()
        import shutil

        shutil.rmtree(infra.RUN_DIR / "kafka", ignore_errors=True)
        shutil.rmtree(infra.RUN_DIR / "ferretdb", ignore_errors=True)
        shutil.rmtree(infra.RUN_DIR / "postgres", ignore_errors=True)
    return infra.up()


@pytest.fixture(scope="session")
def infra() -> Iterator[dict[str, str]]:
    """Addresses of the real Kafka and MongoDB-wire store; exported so settings pick them up."""
    external = {k for k in ("KAFKA_BOOTSTRAP_SERVERS", "MONGODB_URL") if os.environ.get(k)}
    addresses = _start_infra()
    os.environ.update(addresses)
    yield addresses
    if os.environ.get("CI") == "true":  # leave nothing running behind a CI run; locally, keep it warm
        from deploy.local import infra as local

        if "KAFKA_BOOTSTRAP_SERVERS" not in external:
            local.Kafka().down()
        if "MONGODB_URL" not in external:
            local.FerretDB().down()


@pytest.fixture
def unique() -> str:
    """A short random token that keeps one test's customers, groups and databases apart."""
    return uuid.uuid4().hex[:10]
