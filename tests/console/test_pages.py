"""Fast checks of the console's pages in this process, against stand-in services that answer as the
real ones do (the browser tests in test_app.py run the real ones)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from console.app import create_app
from console.settings import ConsoleSettings
from tests.helpers import running

FULL = "ck_full"
READER = "ck_reader"
HOSTILE = "<img src=x onerror=window.__pwned=1>"
SCOPES = {
    FULL: {"customers:read", "customers:write", "pii:read", "tiers:read", "tiers:write", "policy:write",
           "complaints:read", "complaints:write", "notifications:read", "notifications:write"},
    READER: {"customers:read", "tiers:read", "complaints:read", "notifications:read"},
}
#: What each route needs, as the services declare it (enough of them for these pages).
NEEDS = [("POST", r"/customers$", {"customers:write"}), ("GET", r"/customers/lookup$", {"customers:read", "pii:read"}),
         ("POST", r"/customers/[^/]+/interactions$", {"customers:write"}),
         ("GET", r"/customers/[^/]+/(classification|tier-history)$", {"tiers:read"}),
         ("PUT", r"/overrides/", {"tiers:write"}), ("POST", r"^/policy$", {"policy:write"}),
         ("GET", r"^/policy$", {"tiers:read"}), ("POST", r"^/complaints", {"complaints:write"}),
         ("GET", r"^/complaints", {"complaints:read"}), ("GET", r"^/reports/complaints", {"complaints:read"}),
         ("GET", r"/notifications$|^/suppressions|^/reports/notifications", {"notifications:read"}),
         ("POST", r"^/suppressions", {"notifications:write"}), ("GET", r"^/reports/segments", {"tiers:read"}),
         ("GET", r"^/(queues|staff|tasks|accounts)", {"complaints:read"}), ("POST", r"^/tasks/", {"complaints:write"}),
         ("PUT", r"^/accounts/", {"complaints:write"}),
         ("GET", r"^/customers", {"customers:read"})]
DUE_SOON, DUE_LATER = "2030-01-01T09:00:00+00:00", "2030-01-02T09:00:00+00:00"
#: Return visits of C1 in am-xu's queue: one long overdue, one due after the complaint.
OVERDUE_VISIT, LATER_VISIT = "return_visit:2020-03-02:C1", "return_visit:2030-01-03:C1"
STAFF = {"routing": {"default_team": "care"}, "teams": [{"name": "care"}, {"name": "accounts"}], "staff": [
    {"id": "am-xu", "name": f"{HOSTILE}Xu Bo", "role": "agent", "team": "accounts", "account_manager": True},
    {"id": "am-lin", "name": "Lin Qing", "role": "agent", "team": "accounts", "account_manager": True},
    {"id": "agent-li", "name": "Li Na", "role": "agent", "team": "care", "account_manager": False}]}


def visit(task_id: str, due: str) -> dict[str, Any]:
    return {"kind": "return_visit", "task_id": task_id, "customer_id": "C1", "assignee": "am-xu", "status": "open",
            "due_at": due, "due_on": task_id.split(":")[1], "opened_at": "2020-03-02T01:00:00Z"}


def queued(cid: str, due: str) -> dict[str, Any]:
    return {"kind": "complaint", "complaint_id": cid, "customer_id": "C1", "priority": "p2", "status": "received",
            "assignee": "am-xu", "team": "care", "next_target": "first_response", "due_at": due, "warned": True,
            "breached": False, "escalated_to": "handler", "opened_at": "2029-12-31T09:00:00Z"}


def outcome(body: dict[str, Any]) -> httpx.Response:
    """As the complaints service answers: the open visit takes one outcome, the done one only the same."""
    if not isinstance(body.get("satisfaction", 1), int):
        return httpx.Response(422, json={"detail": [{"loc": ["body", "satisfaction"],
                                                     "msg": "Input should be a valid integer"}]})
    if body.get("outcome") != "completed":
        return httpx.Response(409, json={"detail": {"error": "task_done", "message":
                                                    f"{HOSTILE}the outcome was recorded at 2026-03-02T10:00:00Z"}})
    return httpx.Response(200, json={"task_id": OVERDUE_VISIT, "status": "done", **body})


def holder(total: int, met: int, score: float | None) -> dict[str, Any]:
    """One team's or person's figures as ``GET /reports/complaints`` gives them."""
    return {"total": total, "breached": total - met, "escalated": 1, "resolution": {"median_hours": 5.5},
            "sla_attainment": {"first_response": {"rate": met / total}, "resolution": {"rate": None}},
            "csat": {"responses": 1 if score else 0, "average": score}}


REPORT = {"total": 3, "breached": 1, "sla_attainment": {}, "csat": {"responses": 0},
          "by_team": {"care": holder(2, 1, 4.0), "vip": holder(1, 1, None)},
          "by_assignee": {"ann": holder(2, 1, 4.0), "unassigned": holder(1, 1, None)},
          "general_satisfaction": {"responses": 3, "average": 4.0, "satisfied_rate": 0.6667, "by_tier": {
              "high": {"responses": 1, "average": 2.0, "satisfied_rate": 0.0},
              "vip": {"responses": 2, "average": 5.0, "satisfied_rate": 1.0}}}}
#: The complaint's events as the customer's timeline keeps them: an escalation and the alert it sent.
HISTORY = [{"id": "h2", "kind": "complaint", "event_type": "complaint.staff_alert", "complaint_id": "K-soon",
            "at": "2029-12-31T10:00:00+00:00", "status": "received", "priority": "p2", "alert_kind": "escalated",
            "staff_id": "sup-1", "rung": "supervisor", "alert_reason": "first_response_breached", "on_duty": False,
            "assignee": "sup-1", "team": "care"},
           {"id": "h1", "kind": "complaint", "event_type": "complaint.escalated", "complaint_id": "K-soon",
            "at": "2029-12-31T10:00:00+00:00", "status": "received", "priority": "p2", "assignee": "sup-1",
            "sla_target": "first_response"},
           {"id": "h0", "kind": "complaint", "event_type": "complaint.opened", "complaint_id": "K-soon",
            "at": "2029-12-31T09:00:00+00:00", "status": "received", "priority": "p3"}]


def complaint(cid: str, due: str, **extra: Any) -> dict[str, Any]:
    return {"complaint_id": cid, "customer_id": "C1", "subject": f"{HOSTILE}{cid}", "status": "received",
            "priority": "p3", "escalated_to": "handler", "allowed_transitions": ["acknowledged"], "timers": [],
            "comments": [], "sla": {"first_response": {"state": "running", "due_at": due, "warned": False,
                                                       "breached": False}}, **extra}


def answer(request: httpx.Request, down: set[str], sent: list[tuple[str, str, Any]] | None = None) -> httpx.Response:
    service, path, method = request.url.host, request.url.path, request.method
    if service in down:
        raise httpx.ConnectError("refused", request=request)
    key = request.headers.get("x-api-key")
    if key not in SCOPES:
        return httpx.Response(401, json={"detail": "missing or unknown API key"})
    needed = next((scopes for m, pattern, scopes in NEEDS if m == method and re.search(pattern, path)), set())
    missing = needed - SCOPES[key]
    if missing:
        return httpx.Response(403, json={"detail": f"API key lacks scope {', '.join(sorted(missing))}"})
    if request.content == b"[]" or path.startswith("/customers/%20") or "limit=0" in str(request.url):
        return httpx.Response(422, json={"detail": []})  # the scope probes
    found: dict[str, Any] = {
        "/customers/C1": {"customer_id": "C1", "name": f"{HOSTILE}Ann", "email": "ann@example.org", "summary": {},
                          "industry": "manufacturing", "region": "East China", "relationship_since": "2018-04-01",
                          "account_manager": {"id": "am-xu", "name": f"{HOSTILE}Xu Bo",
                                              "since": "2026-03-02T01:00:00+00:00"}},
        "/customers/C2": {"customer_id": "C2", "name": "Bo", "summary": {}, "account_manager": None},
        "/customers/C1/timeline": {"items": HISTORY if "kind=complaint" in str(request.url) else [],
                                   "next_cursor": None},
        "/reports/complaints": REPORT,
        "/customers/C1/consents": {"current": {"email": True}, "history": []},
        "/customers/C1/tier-history": {"changes": [], "overrides": []},
        "/customers/C1/notifications": {"notifications": []},
        "/complaints": {"items": [complaint("K-late", DUE_LATER), complaint("K-soon", DUE_SOON)], "count": 2},
        "/complaints/K-soon": complaint("K-soon", DUE_SOON),
        "/policy": {"version": "v1", "base_currency": "CNY"},
        "/staff": STAFF,
        "/queues/agents/am-xu": {"assignee": "am-xu", "open": 1, "tasks": 2, "items": [
            visit(OVERDUE_VISIT, "2020-03-03T10:00:00Z"), queued("K-soon", DUE_SOON), visit(LATER_VISIT, DUE_LATER)]},
        "/queues/agents/agent-li": {"assignee": "agent-li", "open": 0, "tasks": 0, "items": []},
        "/queues/teams/care": {"team": "care", "open": 1, "items": [queued("K-soon", DUE_SOON)]},
        "/accounts/C1": {"customer_id": "C1", "manager_id": "am-xu", "manager_name": "Xu Bo", "revision": 2,
                         "history": [{"revision": 2, "at": "2026-03-02T01:00:00Z", "actor": f"{HOSTILE}carol",
                                      "reason": f"{HOSTILE}speaks Wu", "previous": "am-lin", "manager": "am-xu"},
                                     {"revision": 1, "at": "2026-03-01T01:00:00Z", "actor": "rule", "reason": "vip",
                                      "previous": None, "manager": "am-lin"}]},
    }
    if method in ("POST", "PUT") and sent is not None:
        sent.append((method, path, json.loads(request.content) if request.content else None))
    if method == "POST" and path.startswith("/tasks/") and path.endswith("/outcome"):
        return outcome(json.loads(request.content))
    if method == "PUT" and path == "/accounts/C1/manager":
        body = json.loads(request.content)
        if body["manager_id"] not in (None, "am-xu", "am-lin"):
            return httpx.Response(422, json={"detail": [{"loc": ["body", "manager_id"], "msg":
                                                         f"{body['manager_id']} is not an account manager"}]})
        return httpx.Response(200, json={**found["/accounts/C1"], "manager_id": body["manager_id"]})
    if path == "/complaints/K-soon/transitions":
        return httpx.Response(409, json={"detail": {"error": "invalid_transition", "message":
                                                    "cannot go from acknowledged to acknowledged",
                                                    "allowed_transitions": ["investigating"]}})
    if path in found:
        return httpx.Response(200, json=found[path])
    return httpx.Response(404, json={"detail": "not found"})


@pytest.fixture
def down() -> set[str]:
    return set()


@pytest.fixture
def sent() -> list[tuple[str, str, Any]]:
    """What the console sent the services (method, path, body), writes only."""
    return []


@pytest.fixture
async def console(down: set[str], sent: list[tuple[str, str, Any]]) -> AsyncIterator[httpx.AsyncClient]:
    settings = ConsoleSettings(environment="development", session_secret="p" * 48, report_cache_s=0,
                               **{f"{name}_url": f"http://{name}" for name in ("customer", "tiering", "complaints",
                                                                               "notifications")})
    app = create_app(settings, transport=httpx.MockTransport(lambda r: answer(r, down, sent)))
    async with running(app) as client:
        client.headers["Accept-Language"] = "en-US"
        yield client


async def sign_in(client: httpx.AsyncClient, key: str) -> httpx.Response:
    page = await client.get("/login")
    return await client.post("/login", data={"api_key": key, "csrf_token": token(page.text)})


def token(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


async def test_pages_need_a_session_and_sign_in_sets_a_protected_cookie(console: httpx.AsyncClient) -> None:
    refused = await console.get("/customers/C1")
    assert refused.status_code == 303 and refused.headers["location"] == "/login?next=/customers/C1"
    assert (await console.post("/login", data={"api_key": FULL})).status_code == 403  # no CSRF token
    assert (await sign_in(console, "ck_nobody")).status_code == 401
    signed = await sign_in(console, FULL)
    assert signed.status_code == 303
    cookie = signed.headers["set-cookie"].lower()
    assert "carecrm_session=" in cookie and "httponly" in cookie and "samesite=lax" in cookie
    assert "max-age=" in cookie and FULL.lower() not in cookie


async def test_upstream_text_is_escaped_and_no_page_has_inline_script(console: httpx.AsyncClient) -> None:
    await sign_in(console, FULL)
    for path in ("/customers/C1", "/complaints", "/complaints/K-soon", "/dashboard", "/policy", "/queue",
                 "/queue?staff=am-xu"):
        page = await console.get(path)
        assert page.status_code == 200, path
        assert "<img src=x" not in page.text and not re.search(r"<script(?![^>]*\bsrc=)", page.text), path
        assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "&lt;img src=x onerror=window.__pwned=1&gt;Ann" in (await console.get("/customers/C1")).text


async def test_the_360_view_shows_industry_region_relationship_and_the_account_manager(
        console: httpx.AsyncClient) -> None:
    await sign_in(console, FULL)
    managed = (await console.get("/customers/C1")).text
    row = re.search(r'<tr id="account-manager">(.*?)</tr>', managed, re.S).group(1)
    assert "&lt;img src=x onerror=window.__pwned=1&gt;Xu Bo" in row and "am-xu" in row and "since Mar 2, 2026" in row
    assert "manufacturing" in managed and "East China" in managed and "Apr 1, 2018" in managed
    unmanaged = (await console.get("/customers/C2")).text
    assert re.search(r'<tr id="account-manager"><th>Account manager</th>\s*<td class="muted">None</td>', unmanaged)


async def test_the_queue_is_ordered_by_the_nearest_due_time(console: httpx.AsyncClient) -> None:
    await sign_in(console, FULL)
    rows = (await console.get("/complaints/rows", headers={"X-Requested-With": "fetch"})).text
    assert rows.index('data-complaint="K-soon"') < rows.index('data-complaint="K-late"')


async def test_a_post_needs_the_sessions_token_and_a_refusal_shows_the_reason(console: httpx.AsyncClient) -> None:
    signed = await sign_in(console, FULL)
    assert signed.status_code == 303
    page = await console.get("/complaints/K-soon")
    assert (await console.post("/complaints/K-soon/transition", data={"to": "acknowledged"})).status_code == 403
    sent = await console.post("/complaints/K-soon/transition", data={"to": "acknowledged",
                                                                      "csrf_token": token(page.text)})
    assert sent.status_code == 303
    shown = (await console.get("/complaints/K-soon")).text
    assert "cannot go from acknowledged to acknowledged (allowed: investigating)" in shown


async def test_a_read_only_key_is_offered_no_action(console: httpx.AsyncClient) -> None:
    await sign_in(console, READER)
    for path in ("/customers/C1", "/complaints/K-soon", "/policy", "/queue?staff=am-xu"):
        assert "data-action" not in (await console.get(path)).text, path


@pytest.mark.parametrize("down", [{"complaints"}])
async def test_a_service_that_is_down_is_named_on_the_page(console: httpx.AsyncClient, down: set[str]) -> None:
    await sign_in(console, FULL)
    queue = await console.get("/complaints")
    assert queue.status_code == 503 and "complaints service is not answering" in queue.text
    customer = await console.get("/customers/C1")
    assert customer.status_code == 200 and "complaints service is not answering" in customer.text


async def test_ids_that_are_not_ids_never_reach_a_service(console: httpx.AsyncClient) -> None:
    await sign_in(console, FULL)
    for path in ("/customers/%2E%2E", "/customers/a%2F..%2Fpolicy", "/customers/bad%20id", "/complaints/%2E%2E"):
        assert (await console.get(path)).status_code == 404, path


async def test_the_sign_in_page_status_answers_at_once_when_the_page_has_seen_nothing(
        console: httpx.AsyncClient) -> None:
    status = (await console.get("/status")).json()
    assert set(status["services"]) == {"customer", "tiering", "complaints", "notifications"}
    assert status["seen"]  # what the page sends back to wait for a change
    health = await console.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"


async def test_the_dashboard_shows_complaints_per_team_and_person_and_general_satisfaction_by_tier(
        console: httpx.AsyncClient) -> None:
    await sign_in(console, FULL)
    page = (await console.get("/dashboard")).text
    teams = page[page.index('data-table="by_team"'):page.index('data-table="by_assignee"')]
    assert teams.index('data-holder="care"') < teams.index('data-holder="vip"')  # the most complaints first
    care = teams[teams.index('data-holder="care"'):teams.index('data-holder="vip"')]
    assert re.findall(r"<td>([^<]*)</td>", care) == ["care", "2", "1", "1", "50.0%", "—", "5.5", "4.00 (1)"]
    people = page[page.index('data-table="by_assignee"'):]
    assert 'data-holder="ann"' in people and ">unassigned<" in people
    general = page[page.index('data-table="general-satisfaction"'):page.index('id="holders"')]
    assert [re.sub(r"\s+", " ", row) for row in re.findall(r"<tr[^>]*><td>(.*?)</tr>", general, re.S)] == [
        "High value</td> <td>1</td><td>2.00</td><td>0.0%</td>", "VIP</td> <td>2</td><td>5.00</td><td>100.0%</td>",
        "all</td> <td>3</td><td>4.00</td><td>66.7%</td>"]
    zh = (await console.get("/dashboard", headers={"Accept-Language": "zh-CN"})).text
    assert "各团队与个人的投诉情况" in zh and "按当前处理人" in zh and ">未分配<" in zh and "高价值" in zh


async def test_the_complaint_page_shows_its_escalations_and_whom_they_alerted(console: httpx.AsyncClient) -> None:
    await sign_in(console, FULL)
    page = (await console.get("/complaints/K-soon")).text
    alerts = page[page.index('id="complaint-alerts"'):page.index('id="comments"')]
    assert 'data-event="opened"' not in alerts
    alert = alerts[alerts.index('data-event="staff_alert"'):alerts.index('data-event="escalated"')]
    assert "staff alerted · escalated to them" in alert and "sup-1 (supervisor) · nobody on duty · care" in alert
    assert "first response overdue" in alert
    assert "first response" in alerts[alerts.index('data-event="escalated"'):]
    zh = (await console.get("/complaints/K-soon", headers={"Accept-Language": "zh-CN"})).text
    assert "升级与员工提醒" in zh and "首次响应已超时" in zh


def rows_of(html: str) -> list[str]:
    return re.findall(r'<tr class="kind-[^"]*" data-item="([^"]+)"', html)


async def test_the_queue_page_lists_a_persons_complaints_and_return_visits_with_overdue_marked(
        console: httpx.AsyncClient) -> None:
    await sign_in(console, FULL)
    chooser = (await console.get("/queue")).text
    assert 'id="queue-hint"' in chooser and 'id="work-queue"' not in chooser
    assert '<option value="am-xu">&lt;img src=x onerror=window.__pwned=1&gt;Xu Bo (am-xu) · account manager' in chooser
    assert '<option value="care">care</option>' in chooser and 'href="/queue"' in chooser

    page = (await console.get("/queue", params={"staff": "am-xu"})).text
    assert rows_of(page) == [OVERDUE_VISIT, "K-soon", LATER_VISIT]  # the service's order, nearest due first
    assert "Open complaints: 1; return visits: 2." in page and '<option value="am-xu" selected>' in page
    overdue, complaint_row, later = re.findall(r'<tr class="kind-.*?</tr>', page, re.S)
    assert 'class="kind-return_visit breached"' in overdue and "overdue</strong>" in overdue
    assert 'href="/customers/C1"' in overdue and "follow-up of Mar 2, 2020" in overdue
    assert 'href="/complaints/K-soon"' in complaint_row and "warned" in complaint_row
    assert "Jan 2, 2030, 5:00 PM" in later and "overdue</strong>" not in later and "breached" not in later
    assert page.count('data-action="record-outcome"') == 2 and 'record-outcome' not in complaint_row
    assert f'action="/queue/tasks/{OVERDUE_VISIT.replace(":", "%3A")}/outcome"' in overdue

    zh = (await console.get("/queue", params={"staff": "am-xu"}, headers={"Accept-Language": "zh-CN"})).text
    assert "回访" in zh and "已逾期" in zh and "2030年1月2日 17:00" in zh and "记录回访结果" in zh
    empty = (await console.get("/queue", params={"staff": "agent-li"})).text
    assert "Nothing open in this queue." in empty and rows_of(empty) == []


async def test_a_team_queue_an_unknown_team_and_names_that_are_not_names(console: httpx.AsyncClient,
                                                                         sent: list[Any]) -> None:
    await sign_in(console, FULL)
    team = (await console.get("/queue", params={"team": "care"})).text
    assert rows_of(team) == ["K-soon"] and "Open complaints: 1." in team and "record-outcome" not in team
    unknown = await console.get("/queue", params={"team": "nobody"})
    assert unknown.status_code == 404 and "The complaints service answered: not found" in unknown.text
    # A person's queue wins over a team's; a name with a slash or dots only is no choice at all.
    assert rows_of((await console.get("/queue", params={"staff": "am-xu", "team": "care"})).text)[0] == OVERDUE_VISIT
    for bad in ("../policy", "..", "a/b", "x" * 129):
        assert 'id="queue-hint"' in (await console.get("/queue", params={"staff": bad})).text, bad
    assert (await console.post("/queue/tasks/bad%20id/outcome", data={})).status_code == 404
    assert sent == []


async def test_recording_an_outcome_sends_it_and_a_refusal_shows_the_services_reason(
        console: httpx.AsyncClient, sent: list[Any]) -> None:
    await sign_in(console, FULL)
    form = {"csrf_token": token((await console.get("/queue?staff=am-xu")).text), "staff": "am-xu", "team": "",
            "outcome": "completed", "channel": "visit", "summary": " Renewal agreed ", "satisfaction": "5"}
    url = f"/queue/tasks/{OVERDUE_VISIT}/outcome"
    assert (await console.post(url, data={**form, "csrf_token": "forged"})).status_code == 403
    assert sent == []
    done = await console.post(url, data=form)
    assert done.status_code == 303 and done.headers["location"] == "/queue?staff=am-xu"
    assert sent == [("POST", f"/tasks/{OVERDUE_VISIT}/outcome",
                     {"outcome": "completed", "channel": "visit", "summary": "Renewal agreed", "satisfaction": 5})]
    assert "Outcome recorded" in (await console.get("/queue?staff=am-xu")).text

    await console.post(url, data={**form, "outcome": "declined", "satisfaction": ""})
    assert sent[-1][2] == {"outcome": "declined", "channel": "visit", "summary": "Renewal agreed"}
    refused = (await console.get("/queue?staff=am-xu")).text
    assert ('class="flash error"' in refused and "Refused: &lt;img src=x onerror=window.__pwned=1&gt;the outcome "
            "was recorded at 2026-03-02T10:00:00Z" in refused and "<img src=x" not in refused)
    await console.post(url, data={**form, "satisfaction": "five", "team": "care", "staff": ""})
    invalid = await console.get("/queue?team=care")
    assert "Refused: satisfaction: Input should be a valid integer" in invalid.text


async def test_the_360_view_changes_the_account_manager_with_the_write_scope_and_shows_the_audit_record(
        console: httpx.AsyncClient, sent: list[Any]) -> None:
    await sign_in(console, FULL)
    page = (await console.get("/customers/C1")).text
    form = re.search(r'<form[^>]*data-action="change-manager".*?</form>', page, re.S).group(0)
    assert '<option value="am-xu" selected>' in form and 'value="am-lin"' in form and "agent-li" not in form
    assert '<option value="">No account manager</option>' in form
    audit = re.search(r'<details id="manager-audit">.*?</details>', page, re.S).group(0)
    assert "&lt;img src=x onerror=window.__pwned=1&gt;speaks Wu" in audit and "assignment rule" in audit
    assert "&lt;img src=x onerror=window.__pwned=1&gt;carol" in audit and "am-lin" in audit and "Mar 2, 2026" in audit

    csrf = token(page)
    moved = await console.post("/customers/C1/manager", data={"csrf_token": csrf, "manager_id": "am-lin",
                                                              "reason": " speaks Wu "})
    assert moved.status_code == 303 and moved.headers["location"] == "/customers/C1"
    assert "Account manager changed" in (await console.get("/customers/C1")).text
    await console.post("/customers/C1/manager", data={"csrf_token": csrf, "manager_id": "", "reason": "left us"})
    await console.post("/customers/C1/manager", data={"csrf_token": csrf, "manager_id": "agent-li", "reason": "x"})
    assert [body for _, _, body in sent] == [{"manager_id": "am-lin", "reason": "speaks Wu"},
                                             {"manager_id": None, "reason": "left us"},
                                             {"manager_id": "agent-li", "reason": "x"}]
    assert "agent-li is not an account manager" in (await console.get("/customers/C1")).text

    await console.post("/logout", data={"csrf_token": csrf})
    await sign_in(console, READER)
    read_only = (await console.get("/customers/C1")).text
    assert 'id="manager-audit"' in read_only and "change-manager" not in read_only
