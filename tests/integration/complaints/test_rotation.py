"""Key rotation of the complaints store on the real broker and store: every sealed text, comments
included, under the new key; then the old key can go."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from services.complaints import visits
from services.complaints.app import build_app
from services.complaints.rotation import rotate_keys
from shared.clock import FixedClock
from tests.helpers import running

from .test_service import MONDAY, auth, body, settings

pytestmark = pytest.mark.integration


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


async def _raw(url: str, database: str, collection: str = "complaints") -> list[dict[str, Any]]:
    client = AsyncMongoClient(url)
    try:
        return await client[database][collection].find({}).to_list(None)
    finally:
        await client.close()


async def test_rotation_reseals_subjects_and_comments_and_the_old_key_can_go(infra: dict[str, str],
                                                                              unique: str) -> None:
    old, new = _key(), _key()
    before = settings(unique, pii_keys={"k1": old}, pii_active_key_id="k1")
    first = build_app(before, clock=FixedClock(MONDAY))
    async with running(first) as client:
        for i in range(5):
            url = f"/complaints/K-{i}-{unique}"
            assert (await client.post("/complaints", json=body(f"C-{i}-{unique}", complaint_id=f"K-{i}-{unique}"),
                                      headers=auth())).status_code == 201
            await client.post(f"{url}/comments", json={"text": f"Called at 5 Nanjing Road, visit {i}"},
                              headers=auth())
        # A return visit's outcome summary is sealed with the same keys.
        visit = visits.new_visit(visit_id=f"return_visit:2026-03-02:C-0-{unique}", customer_id=f"C-0-{unique}",
                                 manager="am-xu", due_on=MONDAY.date(), cadence_days=30, at=MONDAY,
                                 calendar=before.rules().calendar, days=2)
        done = visits.record_outcome(visit, outcome="completed", channel="visit", summary="Met at 5 Nanjing Road",
                                     satisfaction=4, actor="am-xu", now=MONDAY)
        assert done is not None and await first.state.accounts.repo.add_task(done)
    during = settings(unique, pii_keys={"k1": old, "k2": new}, pii_active_key_id="k2", rotation_batch_size=2)
    app = build_app(during, clock=FixedClock(MONDAY))
    async with running(app):
        rewritten = await rotate_keys(app.state.repo, during.rotation_batch_size)
        again = await rotate_keys(app.state.repo, during.rotation_batch_size)
    assert rewritten == {"complaints": 5, "tasks": 1} and again == {"complaints": 0, "tasks": 0}
    docs = await _raw(infra["MONGODB_URL"], during.database_name)
    assert {d["pii_kid"] for d in docs} == {"k2"}
    assert {s["k"] for d in docs for s in d["pii"].values()} == {"k2"}
    assert {c["text"]["k"] for d in docs for c in d["comments"]} == {"k2"}
    assert "Nanjing" not in json.dumps(docs, default=str)
    [task] = await _raw(infra["MONGODB_URL"], during.database_name, "tasks")
    assert task["pii_kid"] == "k2" and "Nanjing" not in json.dumps(task, default=str)
    after = settings(unique, pii_keys={"k2": new}, pii_active_key_id="k2")
    async with running(build_app(after, clock=FixedClock(MONDAY))) as client:
        read = (await client.get(f"/complaints/K-3-{unique}", headers=auth())).json()
        task_read = (await client.get(f"/tasks/return_visit:2026-03-02:C-0-{unique}", headers=auth())).json()
    assert read["subject"] == "Parcel late" and task_read["summary"] == "Met at 5 Nanjing Road"
    assert [c["text"] for c in read["comments"]] == ["Called at 5 Nanjing Road, visit 3"]


async def test_the_rotate_keys_command_runs_from_the_command_line(infra: dict[str, str], unique: str) -> None:
    old, new = _key(), _key()
    before = settings(unique, pii_keys={"k1": old}, pii_active_key_id="k1")
    async with running(build_app(before, clock=FixedClock(MONDAY))) as client:
        await client.post("/complaints", json=body(f"C-{unique}", complaint_id=f"K-{unique}"), headers=auth())
    env = {**os.environ, "ENVIRONMENT": "production", "COMPLAINTS_MONGODB_DATABASE": before.database_name,
           "COMPLAINTS_PII_KEYS": json.dumps({"k1": old, "k2": new}), "COMPLAINTS_PII_ACTIVE_KEY_ID": "k2",
           "COMPLAINTS_BLIND_INDEX_KEY": _key(), "LOG_LEVEL": "WARNING"}
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "services.complaints", "rotate-keys",
                                                   env=env, stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0
    assert json.loads(out.decode().strip().splitlines()[-1]) == {"rewritten": {"complaints": 1, "tasks": 0}}
