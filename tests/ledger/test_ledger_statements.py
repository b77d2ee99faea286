import pytest

from ledger import (
    StatementPage,
    capture,
    get_statement,
    grant,
    hold,
    refund,
    release,
)
from ledger.statements import MAX_STATEMENT_LIMIT


def post_history(engine) -> None:
    """Grant 100, hold 60, capture 25, release 35, refund 5: five transactions of acme."""
    grant(engine, tenant_id="acme", amount_micros=100, key="g", reason="welcome")
    hold(engine, tenant_id="acme", job_id="j", amount_micros=60, key="h")
    capture(engine, tenant_id="acme", job_id="j", amount_micros=25, key="c")
    release(engine, tenant_id="acme", job_id="j", amount_micros=35, key="r")
    refund(engine, tenant_id="acme", job_id="j", amount_micros=5, key="rf", reason="late start")


def summarize(page: StatementPage) -> list[tuple]:
    return [
        (
            entry.kind,
            entry.job_id,
            entry.amount_micros,
            entry.available_change_micros,
            entry.held_change_micros,
            entry.available_after_micros,
            entry.reason,
        )
        for entry in page.entries
    ]


def read_all_pages(engine, tenant_id: str, limit: int) -> list:
    entries, cursor = [], None
    while True:
        page = get_statement(engine, tenant_id, limit=limit, cursor=cursor)
        entries.extend(page.entries)
        if page.next_cursor is None:
            return entries
        cursor = page.next_cursor


def test_statement_lists_newest_first_with_balances(any_engine):
    post_history(any_engine)

    page = get_statement(any_engine, "acme")

    assert summarize(page) == [
        ("refund", "j", 5, 5, 0, 80, "late start"),
        ("release", "j", 35, 35, -35, 75, ""),
        ("capture", "j", 25, 0, -25, 40, ""),
        ("hold", "j", 60, -60, 60, 40, ""),
        ("grant", None, 100, 100, 0, 100, "welcome"),
    ]
    assert page.next_cursor is None
    assert [entry.key for entry in page.entries] == ["rf", "r", "c", "h", "g"]
    assert [entry.transaction_id for entry in page.entries] == [5, 4, 3, 2, 1]


def test_statement_entries_carry_utc_times(any_engine):
    post_history(any_engine)

    entries = get_statement(any_engine, "acme").entries

    assert all(entry.created_at.utcoffset().total_seconds() == 0 for entry in entries)
    assert entries[0].created_at >= entries[-1].created_at


def test_statement_pages_cover_history_once(any_engine):
    post_history(any_engine)

    first = get_statement(any_engine, "acme", limit=2)
    second = get_statement(any_engine, "acme", limit=2, cursor=first.next_cursor)
    third = get_statement(any_engine, "acme", limit=2, cursor=second.next_cursor)

    assert [e.kind for e in first.entries] == ["refund", "release"]
    assert [e.kind for e in second.entries] == ["capture", "hold"]
    assert [e.kind for e in third.entries] == ["grant"]
    assert third.next_cursor is None


def test_statement_capture_alone_on_page_carries_balance(any_engine):
    post_history(any_engine)
    first = get_statement(any_engine, "acme", limit=2)

    # The capture is alone on its page, so its balance comes from the posting before it.
    second = get_statement(any_engine, "acme", limit=1, cursor=first.next_cursor)

    assert summarize(second) == [("capture", "j", 25, 0, -25, 40, "")]


def test_statement_page_stable_under_new_transactions(any_engine):
    post_history(any_engine)
    first = get_statement(any_engine, "acme", limit=2)

    grant(any_engine, tenant_id="acme", amount_micros=7, key="g2")
    hold(any_engine, tenant_id="acme", job_id="j2", amount_micros=3, key="h2")
    rest = read_all_pages_from(any_engine, first.next_cursor)

    assert [e.key for e in first.entries] == ["rf", "r"]
    assert [e.key for e in rest] == ["c", "h", "g"]
    newest = get_statement(any_engine, "acme", limit=2).entries
    assert [e.key for e in newest] == ["h2", "g2"]


def read_all_pages_from(engine, cursor: str) -> list:
    entries = []
    while cursor is not None:
        page = get_statement(engine, "acme", limit=2, cursor=cursor)
        entries.extend(page.entries)
        cursor = page.next_cursor
    return entries


def test_statement_shows_only_own_tenant(any_engine):
    post_history(any_engine)
    grant(any_engine, tenant_id="globex", amount_micros=9, key="g")

    page = get_statement(any_engine, "globex")

    assert summarize(page) == [("grant", None, 9, 9, 0, 9, "")]


def test_statement_of_unknown_tenant_is_empty(any_engine):
    page = get_statement(any_engine, "nobody")

    assert page == StatementPage(entries=[], next_cursor=None)


def test_statement_exact_page_has_no_next_cursor(any_engine):
    post_history(any_engine)

    page = get_statement(any_engine, "acme", limit=5)

    assert len(page.entries) == 5
    assert page.next_cursor is None


def test_statement_all_pages_match_one_page(any_engine):
    post_history(any_engine)

    assert read_all_pages(any_engine, "acme", limit=3) == get_statement(any_engine, "acme").entries


@pytest.mark.parametrize("cursor", ["", "not-a-cursor", "djE6", "eHg6MTI", "!!!"])
def test_statement_rejects_invalid_cursor(any_engine, cursor):
    with pytest.raises(ValueError, match="invalid statement cursor"):
        get_statement(any_engine, "acme", cursor=cursor)


@pytest.mark.parametrize("limit", [0, -1, MAX_STATEMENT_LIMIT + 1])
def test_statement_rejects_limit_out_of_range(any_engine, limit):
    with pytest.raises(ValueError, match=f"limit must be from 1 to {MAX_STATEMENT_LIMIT}"):
        get_statement(any_engine, "acme", limit=limit)
