"""Schemathesis hooks for .ci/schemathesis: a check that a refused request changed
nothing. Before every state-changing request (POST, PUT, PATCH, DELETE) it counts the
rows the server keeps (read-only, straight from the SQLite file); after a 4xx answer it
counts again, and any difference fails the run. The throttle table is left out on
purpose: recording a refused attempt is what throttling by admission does."""

import os
import sqlite3

import schemathesis

DATABASE = os.environ["PORTCULLIS_FUZZ_DB"]
QUERIES = {
    "users": "SELECT COUNT(*) FROM users",
    "disabled users": "SELECT COUNT(*) FROM users WHERE disabled",
    "users' not_before": "SELECT COALESCE(SUM(not_before), 0) FROM users",
    "refresh families": "SELECT COUNT(*) FROM refresh_families",
    "revoked families": "SELECT COUNT(*) FROM refresh_families WHERE revoked_at IS NOT NULL",
    "refresh tokens": "SELECT COUNT(*) FROM refresh_tokens",
    "sessions": "SELECT COUNT(*) FROM sessions",
    "revoked sessions": "SELECT COUNT(*) FROM sessions WHERE revoked_at IS NOT NULL",
    "clients": "SELECT COUNT(*) FROM clients",
    "devices": "SELECT COUNT(*) FROM devices",
    "events": "SELECT COALESCE(MAX(id), 0) FROM events",
    "signing keys": "SELECT COUNT(*) FROM signing_keys",
}
CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
_before = {}


def _counts():
    connection = sqlite3.connect(f"file:{DATABASE}?mode=ro", uri=True)
    try:
        return {name: connection.execute(sql).fetchone()[0] for name, sql in QUERIES.items()}
    finally:
        connection.close()


@schemathesis.hook
def before_call(context, case, kwargs):
    if case.method.upper() in CHANGING:
        _before[id(case)] = _counts()


@schemathesis.check
def refused_requests_change_nothing(ctx, response, case):
    before = _before.pop(id(case), None)
    if before is None or not 400 <= response.status_code < 500:
        return None
    after = _counts()
    changed = sorted(name for name in before if before[name] != after[name])
    if changed:
        raise AssertionError(
            f"refused with {response.status_code} but changed: {', '.join(changed)}"
        )
    return None
