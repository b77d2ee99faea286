"""Add refunds, expiring grants (lots), and PostgreSQL functions that post in one round trip.

- transactions: kinds `refund` and `expire`; an `expire` needs no job id; index on
  (tenant_id, id) for statements.
- holds: `refunded`, with CHECK refunded <= captured.
- lots and hold_lots: the portions of available credits with their expiry, and which portions
  each hold drew from. Existing balances become one non-expiring lot per tenant, and each
  existing hold draws its unreleased amount from it.
- PostgreSQL only: the deferred constraint trigger `tr_postings_balanced`, and the functions
  `ledger_post`, `ledger_post_batch` and `ledger_expire_lot` with their helpers.

SQLite rebuilds `transactions` and `holds` to change their CHECK constraints, so
`ledger.schema.upgrade` turns foreign keys off for the migration; this migration checks them
with `PRAGMA foreign_key_check` before it ends.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID_TYPE = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

OPENING_LOTS = """
INSERT INTO lots (tenant_id, transaction_id, amount, remaining, expired, expires_at, expired_at)
SELECT tenant_id, NULL, available + drawn, available, 0, NULL, NULL
FROM (
    SELECT a.tenant_id,
           a.balance AS available,
           COALESCE(
               (SELECT SUM(h.amount - h.released) FROM holds AS h
                WHERE h.tenant_id = a.tenant_id),
               0
           ) AS drawn
    FROM accounts AS a
    WHERE a.name = 'available' AND a.tenant_id <> 'platform'
) AS balances
WHERE available + drawn > 0
"""

OPENING_HOLD_LOTS = """
INSERT INTO hold_lots (job_id, lot_id, amount, captured, released)
SELECT h.job_id, l.id, h.amount - h.released, h.captured, 0
FROM holds AS h
JOIN lots AS l ON l.tenant_id = h.tenant_id AND l.transaction_id IS NULL
WHERE h.amount - h.released > 0
"""

# Every function below returns a ledger_outcome. `status` is one of: posted, existing (the key
# was posted before; the other fields are the stored transaction, which the caller compares
# with its request), insufficient_funds, duplicate_hold, unknown_hold, hold_exceeded,
# refund_exceeded (limit_micros holds the amount that was available), or nothing (an expiry
# that had nothing to do). A rejection writes nothing, so a batch can carry on after it.
#
# Each operation first locks the tenant's available account row, which serializes all
# transactions of the tenant; the checks that follow read state that cannot change before the
# writes. Platform account rows are locked last, by the UPDATE that moves the money.
PLPGSQL_FUNCTIONS = r"""
CREATE TYPE ledger_outcome AS (
    status text,
    transaction_id bigint,
    kind text,
    job_id text,
    amount bigint,
    reason text,
    expires_at timestamptz,
    limit_micros bigint
);

CREATE FUNCTION ledger_lock_tenant(
    p_tenant_id text, p_create boolean, OUT available_id bigint, OUT available_balance bigint
) LANGUAGE plpgsql AS $$
BEGIN
    SELECT id, balance INTO available_id, available_balance
    FROM accounts WHERE tenant_id = p_tenant_id AND name = 'available' FOR UPDATE;
    IF NOT FOUND AND p_create THEN
        INSERT INTO accounts (tenant_id, name, balance, allow_negative)
        VALUES (p_tenant_id, 'available', 0, false), (p_tenant_id, 'held', 0, false)
        ON CONFLICT (tenant_id, name) DO NOTHING;
        SELECT id, balance INTO available_id, available_balance
        FROM accounts WHERE tenant_id = p_tenant_id AND name = 'available' FOR UPDATE;
    END IF;
END $$;

CREATE FUNCTION ledger_account_id(p_tenant_id text, p_name text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
BEGIN
    SELECT id INTO v_id FROM accounts WHERE tenant_id = p_tenant_id AND name = p_name;
    IF NOT FOUND THEN
        INSERT INTO accounts (tenant_id, name, balance, allow_negative)
        VALUES (p_tenant_id, p_name, 0, p_name = 'funding')
        ON CONFLICT (tenant_id, name) DO NOTHING;
        SELECT id INTO v_id FROM accounts WHERE tenant_id = p_tenant_id AND name = p_name;
    END IF;
    RETURN v_id;
END $$;

-- Debit the source, credit the destination, and write one posting for each with the balance
-- that the UPDATE returned. A debit below zero on a guarded account fails on the CHECK.
-- The helpers are PL/pgSQL rather than SQL functions because PL/pgSQL keeps each statement's
-- plan for the session, while PostgreSQL plans the body of a SQL function on every call.
CREATE FUNCTION ledger_transfer(
    p_transaction_id bigint, p_source_id bigint, p_destination_id bigint, p_amount bigint
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_balance bigint;
BEGIN
    UPDATE accounts SET balance = balance - p_amount WHERE id = p_source_id
    RETURNING balance INTO v_balance;
    INSERT INTO postings (transaction_id, account_id, amount, balance_after)
    VALUES (p_transaction_id, p_source_id, -p_amount, v_balance);

    UPDATE accounts SET balance = balance + p_amount WHERE id = p_destination_id
    RETURNING balance INTO v_balance;
    INSERT INTO postings (transaction_id, account_id, amount, balance_after)
    VALUES (p_transaction_id, p_destination_id, p_amount, v_balance);
END $$;

CREATE FUNCTION ledger_existing(p_tenant_id text, p_key text) RETURNS ledger_outcome
LANGUAGE plpgsql AS $$
DECLARE
    r ledger_outcome;
BEGIN
    SELECT 'existing', t.id, t.kind, t.job_id, t.amount, t.reason, l.expires_at, NULL
    INTO r
    FROM transactions AS t LEFT JOIN lots AS l ON l.transaction_id = t.id
    WHERE t.tenant_id = p_tenant_id AND t.key = p_key;
    RETURN r;
END $$;

CREATE FUNCTION ledger_posted(
    p_transaction_id bigint, p_kind text, p_job_id text, p_amount bigint, p_reason text,
    p_expires_at timestamptz
) RETURNS ledger_outcome LANGUAGE plpgsql AS $$
DECLARE
    r ledger_outcome;
BEGIN
    r.status := 'posted';
    r.transaction_id := p_transaction_id;
    r.kind := p_kind;
    r.job_id := p_job_id;
    r.amount := p_amount;
    r.reason := p_reason;
    r.expires_at := p_expires_at;
    RETURN r;
END $$;

CREATE FUNCTION ledger_rejected(p_status text, p_limit_micros bigint) RETURNS ledger_outcome
LANGUAGE plpgsql AS $$
DECLARE
    r ledger_outcome;
BEGIN
    r.status := p_status;
    r.limit_micros := p_limit_micros;
    RETURN r;
END $$;

CREATE FUNCTION ledger_grant(
    p_tenant_id text, p_key text, p_amount bigint, p_reason text, p_expires_at timestamptz
) RETURNS ledger_outcome LANGUAGE plpgsql AS $$
DECLARE
    r ledger_outcome;
    v_available_id bigint;
    v_available bigint;
    v_transaction_id bigint;
BEGIN
    SELECT * INTO v_available_id, v_available FROM ledger_lock_tenant(p_tenant_id, true);
    r := ledger_existing(p_tenant_id, p_key);
    IF r.status IS NOT NULL THEN
        RETURN r;
    END IF;

    INSERT INTO transactions (tenant_id, key, kind, job_id, amount, reason)
    VALUES (p_tenant_id, p_key, 'grant', NULL, p_amount, p_reason)
    RETURNING id INTO v_transaction_id;
    PERFORM ledger_transfer(
        v_transaction_id, ledger_account_id('platform', 'funding'), v_available_id, p_amount
    );
    INSERT INTO lots (tenant_id, transaction_id, amount, remaining, expired, expires_at)
    VALUES (p_tenant_id, v_transaction_id, p_amount, p_amount, 0, p_expires_at);

    RETURN ledger_posted(v_transaction_id, 'grant', NULL, p_amount, p_reason, p_expires_at);
END $$;

-- Draws on the spendable lots, soonest expiry first and never-expiring lots last. A lot past
-- its expiry is not spendable even before ledger_expire_lot has expired it.
CREATE FUNCTION ledger_hold(
    p_tenant_id text, p_key text, p_job_id text, p_amount bigint, p_reason text
) RETURNS ledger_outcome LANGUAGE plpgsql AS $$
DECLARE
    r ledger_outcome;
    v_available_id bigint;
    v_available bigint;
    v_spendable bigint;
    v_transaction_id bigint;
    v_left bigint := p_amount;
    v_take bigint;
    v_lot record;
BEGIN
    SELECT * INTO v_available_id, v_available FROM ledger_lock_tenant(p_tenant_id, false);
    r := ledger_existing(p_tenant_id, p_key);
    IF r.status IS NOT NULL THEN
        RETURN r;
    END IF;

    IF EXISTS (SELECT 1 FROM holds WHERE job_id = p_job_id) THEN
        RETURN ledger_rejected('duplicate_hold', NULL);
    END IF;
    SELECT COALESCE(SUM(remaining), 0) INTO v_spendable
    FROM lots
    WHERE tenant_id = p_tenant_id AND remaining > 0
        AND (expires_at IS NULL OR expires_at > now());
    IF v_spendable < p_amount THEN
        RETURN ledger_rejected('insufficient_funds', v_spendable);
    END IF;

    -- Another tenant may have inserted a hold for the same job since the check above.
    INSERT INTO holds (job_id, tenant_id, amount, captured, released, refunded)
    VALUES (p_job_id, p_tenant_id, p_amount, 0, 0, 0)
    ON CONFLICT (job_id) DO NOTHING;
    IF NOT FOUND THEN
        RETURN ledger_rejected('duplicate_hold', NULL);
    END IF;

    INSERT INTO transactions (tenant_id, key, kind, job_id, amount, reason)
    VALUES (p_tenant_id, p_key, 'hold', p_job_id, p_amount, p_reason)
    RETURNING id INTO v_transaction_id;
    PERFORM ledger_transfer(
        v_transaction_id, v_available_id, ledger_account_id(p_tenant_id, 'held'), p_amount
    );

    FOR v_lot IN
        SELECT id, remaining FROM lots
        WHERE tenant_id = p_tenant_id AND remaining > 0
            AND (expires_at IS NULL OR expires_at > now())
        ORDER BY expires_at NULLS LAST, id
    LOOP
        v_take := LEAST(v_lot.remaining, v_left);
        UPDATE lots SET remaining = remaining - v_take WHERE id = v_lot.id;
        INSERT INTO hold_lots (job_id, lot_id, amount, captured, released)
        VALUES (p_job_id, v_lot.id, v_take, 0, 0);
        v_left := v_left - v_take;
        EXIT WHEN v_left = 0;
    END LOOP;
    IF v_left <> 0 THEN
        RAISE EXCEPTION 'ledger inconsistent: lots of tenant % changed under the tenant lock',
            p_tenant_id;
    END IF;

    RETURN ledger_posted(v_transaction_id, 'hold', p_job_id, p_amount, p_reason, NULL);
END $$;

-- Captures take the hold's parts in the order the hold drew them, so the credits that expire
-- first are spent first.
CREATE FUNCTION ledger_capture(
    p_tenant_id text, p_key text, p_job_id text, p_amount bigint, p_reason text
) RETURNS ledger_outcome LANGUAGE plpgsql AS $$
DECLARE
    r ledger_outcome;
    v_available_id bigint;
    v_available bigint;
    v_hold holds%ROWTYPE;
    v_transaction_id bigint;
    v_left bigint := p_amount;
    v_take bigint;
    v_part record;
BEGIN
    SELECT * INTO v_available_id, v_available FROM ledger_lock_tenant(p_tenant_id, false);
    r := ledger_existing(p_tenant_id, p_key);
    IF r.status IS NOT NULL THEN
        RETURN r;
    END IF;

    SELECT * INTO v_hold FROM holds WHERE job_id = p_job_id AND tenant_id = p_tenant_id;
    IF NOT FOUND THEN
        RETURN ledger_rejected('unknown_hold', NULL);
    END IF;
    IF v_hold.amount - v_hold.captured - v_hold.released < p_amount THEN
        RETURN ledger_rejected(
            'hold_exceeded', v_hold.amount - v_hold.captured - v_hold.released
        );
    END IF;

    INSERT INTO transactions (tenant_id, key, kind, job_id, amount, reason)
    VALUES (p_tenant_id, p_key, 'capture', p_job_id, p_amount, p_reason)
    RETURNING id INTO v_transaction_id;
    UPDATE holds SET captured = captured + p_amount WHERE job_id = p_job_id;
    PERFORM ledger_transfer(
        v_transaction_id,
        ledger_account_id(p_tenant_id, 'held'),
        ledger_account_id('platform', 'revenue'),
        p_amount
    );

    FOR v_part IN
        SELECT hl.lot_id, hl.amount - hl.captured - hl.released AS unsettled
        FROM hold_lots AS hl JOIN lots AS l ON l.id = hl.lot_id
        WHERE hl.job_id = p_job_id AND hl.amount - hl.captured - hl.released > 0
        ORDER BY l.expires_at NULLS LAST, l.id
    LOOP
        v_take := LEAST(v_part.unsettled, v_left);
        UPDATE hold_lots SET captured = captured + v_take
        WHERE job_id = p_job_id AND lot_id = v_part.lot_id;
        v_left := v_left - v_take;
        EXIT WHEN v_left = 0;
    END LOOP;
    IF v_left <> 0 THEN
        RAISE EXCEPTION 'ledger inconsistent: parts of the hold of job % hold less than the hold',
            p_job_id;
    END IF;

    RETURN ledger_posted(v_transaction_id, 'capture', p_job_id, p_amount, p_reason, NULL);
END $$;

-- Releases take the hold's parts in reverse order, so the credits that expire last go back.
-- Credits that return to a lot that has already expired leave again at once, through an
-- expire transaction keyed expire/{grant transaction id}/{release transaction id}.
CREATE FUNCTION ledger_release(
    p_tenant_id text, p_key text, p_job_id text, p_amount bigint, p_reason text
) RETURNS ledger_outcome LANGUAGE plpgsql AS $$
DECLARE
    r ledger_outcome;
    v_available_id bigint;
    v_available bigint;
    v_hold holds%ROWTYPE;
    v_transaction_id bigint;
    v_expire_id bigint;
    v_left bigint := p_amount;
    v_take bigint;
    v_part record;
BEGIN
    SELECT * INTO v_available_id, v_available FROM ledger_lock_tenant(p_tenant_id, false);
    r := ledger_existing(p_tenant_id, p_key);
    IF r.status IS NOT NULL THEN
        RETURN r;
    END IF;

    SELECT * INTO v_hold FROM holds WHERE job_id = p_job_id AND tenant_id = p_tenant_id;
    IF NOT FOUND THEN
        RETURN ledger_rejected('unknown_hold', NULL);
    END IF;
    IF v_hold.amount - v_hold.captured - v_hold.released < p_amount THEN
        RETURN ledger_rejected(
            'hold_exceeded', v_hold.amount - v_hold.captured - v_hold.released
        );
    END IF;

    INSERT INTO transactions (tenant_id, key, kind, job_id, amount, reason)
    VALUES (p_tenant_id, p_key, 'release', p_job_id, p_amount, p_reason)
    RETURNING id INTO v_transaction_id;
    UPDATE holds SET released = released + p_amount WHERE job_id = p_job_id;
    PERFORM ledger_transfer(
        v_transaction_id, ledger_account_id(p_tenant_id, 'held'), v_available_id, p_amount
    );

    FOR v_part IN
        SELECT hl.lot_id, hl.amount - hl.captured - hl.released AS unsettled,
               l.transaction_id AS lot_transaction_id, l.expired_at
        FROM hold_lots AS hl JOIN lots AS l ON l.id = hl.lot_id
        WHERE hl.job_id = p_job_id AND hl.amount - hl.captured - hl.released > 0
        ORDER BY l.expires_at DESC NULLS FIRST, l.id DESC
    LOOP
        v_take := LEAST(v_part.unsettled, v_left);
        UPDATE hold_lots SET released = released + v_take
        WHERE job_id = p_job_id AND lot_id = v_part.lot_id;

        IF v_part.expired_at IS NULL THEN
            UPDATE lots SET remaining = remaining + v_take WHERE id = v_part.lot_id;
        ELSE
            INSERT INTO transactions (tenant_id, key, kind, job_id, amount, reason)
            VALUES (
                p_tenant_id,
                'expire/' || v_part.lot_transaction_id || '/' || v_transaction_id,
                'expire',
                p_job_id,
                v_take,
                'credits of expired grant ' || v_part.lot_transaction_id
                    || ' returned by release ' || v_transaction_id
            )
            RETURNING id INTO v_expire_id;
            PERFORM ledger_transfer(
                v_expire_id, v_available_id, ledger_account_id('platform', 'expired'), v_take
            );
            UPDATE lots SET expired = expired + v_take WHERE id = v_part.lot_id;
        END IF;

        v_left := v_left - v_take;
        EXIT WHEN v_left = 0;
    END LOOP;
    IF v_left <> 0 THEN
        RAISE EXCEPTION 'ledger inconsistent: parts of the hold of job % hold less than the hold',
            p_job_id;
    END IF;

    RETURN ledger_posted(v_transaction_id, 'release', p_job_id, p_amount, p_reason, NULL);
END $$;

-- A refund is a new lot that never expires.
CREATE FUNCTION ledger_refund(
    p_tenant_id text, p_key text, p_job_id text, p_amount bigint, p_reason text
) RETURNS ledger_outcome LANGUAGE plpgsql AS $$
DECLARE
    r ledger_outcome;
    v_available_id bigint;
    v_available bigint;
    v_hold holds%ROWTYPE;
    v_transaction_id bigint;
BEGIN
    SELECT * INTO v_available_id, v_available FROM ledger_lock_tenant(p_tenant_id, false);
    r := ledger_existing(p_tenant_id, p_key);
    IF r.status IS NOT NULL THEN
        RETURN r;
    END IF;

    SELECT * INTO v_hold FROM holds WHERE job_id = p_job_id AND tenant_id = p_tenant_id;
    IF NOT FOUND THEN
        RETURN ledger_rejected('unknown_hold', NULL);
    END IF;
    IF v_hold.captured - v_hold.refunded < p_amount THEN
        RETURN ledger_rejected('refund_exceeded', v_hold.captured - v_hold.refunded);
    END IF;

    INSERT INTO transactions (tenant_id, key, kind, job_id, amount, reason)
    VALUES (p_tenant_id, p_key, 'refund', p_job_id, p_amount, p_reason)
    RETURNING id INTO v_transaction_id;
    UPDATE holds SET refunded = refunded + p_amount WHERE job_id = p_job_id;
    PERFORM ledger_transfer(
        v_transaction_id, ledger_account_id('platform', 'revenue'), v_available_id, p_amount
    );
    INSERT INTO lots (tenant_id, transaction_id, amount, remaining, expired, expires_at)
    VALUES (p_tenant_id, v_transaction_id, p_amount, p_amount, 0, NULL);

    RETURN ledger_posted(v_transaction_id, 'refund', p_job_id, p_amount, p_reason, NULL);
END $$;

CREATE FUNCTION ledger_post(
    p_kind text, p_tenant_id text, p_key text, p_job_id text, p_amount bigint, p_reason text,
    p_expires_at timestamptz
) RETURNS ledger_outcome LANGUAGE plpgsql AS $$
BEGIN
    CASE p_kind
        WHEN 'grant' THEN
            RETURN ledger_grant(p_tenant_id, p_key, p_amount, p_reason, p_expires_at);
        WHEN 'hold' THEN
            RETURN ledger_hold(p_tenant_id, p_key, p_job_id, p_amount, p_reason);
        WHEN 'capture' THEN
            RETURN ledger_capture(p_tenant_id, p_key, p_job_id, p_amount, p_reason);
        WHEN 'release' THEN
            RETURN ledger_release(p_tenant_id, p_key, p_job_id, p_amount, p_reason);
        WHEN 'refund' THEN
            RETURN ledger_refund(p_tenant_id, p_key, p_job_id, p_amount, p_reason);
        ELSE
            RAISE EXCEPTION 'ledger_post cannot post a transaction of kind %', p_kind;
    END CASE;
END $$;

CREATE FUNCTION ledger_post_batch(
    p_kinds text[], p_tenant_ids text[], p_keys text[], p_job_ids text[], p_amounts bigint[],
    p_reasons text[], p_expires_at timestamptz[]
) RETURNS SETOF ledger_outcome LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. COALESCE(array_length(p_kinds, 1), 0) LOOP
        RETURN NEXT ledger_post(
            p_kinds[i], p_tenant_ids[i], p_keys[i], p_job_ids[i], p_amounts[i], p_reasons[i],
            p_expires_at[i]
        );
    END LOOP;
END $$;

-- Expires a lot whose expiry is at or before p_now: marks it expired and moves what remains of
-- it from the tenant's available balance to the platform's expired account, keyed
-- expire/{grant transaction id}. Credits that holds drew from the lot stay held; a later
-- release of them expires them (see ledger_release).
CREATE FUNCTION ledger_expire_lot(p_lot_id bigint, p_now timestamptz) RETURNS ledger_outcome
LANGUAGE plpgsql AS $$
DECLARE
    v_tenant_id text;
    v_available_id bigint;
    v_available bigint;
    v_lot lots%ROWTYPE;
    v_reason text;
    v_transaction_id bigint;
BEGIN
    SELECT tenant_id INTO v_tenant_id FROM lots WHERE id = p_lot_id;
    IF NOT FOUND THEN
        RETURN ledger_rejected('nothing', NULL);
    END IF;
    SELECT * INTO v_available_id, v_available FROM ledger_lock_tenant(v_tenant_id, false);

    SELECT * INTO v_lot FROM lots WHERE id = p_lot_id;
    IF v_lot.expired_at IS NOT NULL OR v_lot.expires_at IS NULL OR v_lot.expires_at > p_now THEN
        RETURN ledger_rejected('nothing', NULL);
    END IF;
    UPDATE lots SET expired_at = p_now WHERE id = p_lot_id;
    IF v_lot.remaining = 0 THEN
        RETURN ledger_rejected('nothing', NULL);
    END IF;

    v_reason := 'unspent credits of grant ' || v_lot.transaction_id || ' expired';
    INSERT INTO transactions (tenant_id, key, kind, job_id, amount, reason)
    VALUES (
        v_tenant_id, 'expire/' || v_lot.transaction_id, 'expire', NULL, v_lot.remaining, v_reason
    )
    RETURNING id INTO v_transaction_id;
    PERFORM ledger_transfer(
        v_transaction_id, v_available_id, ledger_account_id('platform', 'expired'),
        v_lot.remaining
    );
    UPDATE lots SET remaining = 0, expired = expired + v_lot.remaining WHERE id = p_lot_id;

    RETURN ledger_posted(v_transaction_id, 'expire', NULL, v_lot.remaining, v_reason, NULL);
END $$;

-- Deferred to commit, when every posting of the transaction is written.
CREATE FUNCTION ledger_check_postings_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_transaction_id bigint;
    v_total numeric;
BEGIN
    FOREACH v_transaction_id IN ARRAY ARRAY[
        CASE WHEN TG_OP <> 'DELETE' THEN NEW.transaction_id END,
        CASE WHEN TG_OP <> 'INSERT' THEN OLD.transaction_id END
    ] LOOP
        CONTINUE WHEN v_transaction_id IS NULL;
        SELECT COALESCE(SUM(amount), 0) INTO v_total
        FROM postings WHERE transaction_id = v_transaction_id;
        IF v_total <> 0 THEN
            RAISE EXCEPTION 'postings of transaction % sum to %, not to zero',
                v_transaction_id, v_total
                USING ERRCODE = 'check_violation', CONSTRAINT = 'tr_postings_balanced';
        END IF;
    END LOOP;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER tr_postings_balanced
    AFTER INSERT OR UPDATE OR DELETE ON postings
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_check_postings_balanced();
"""

DROP_PLPGSQL_FUNCTIONS = """
DROP TRIGGER tr_postings_balanced ON postings;
DROP FUNCTION ledger_check_postings_balanced();
DROP FUNCTION ledger_expire_lot(bigint, timestamptz);
DROP FUNCTION ledger_post_batch(text[], text[], text[], text[], bigint[], text[], timestamptz[]);
DROP FUNCTION ledger_post(text, text, text, text, bigint, text, timestamptz);
DROP FUNCTION ledger_refund(text, text, text, bigint, text);
DROP FUNCTION ledger_release(text, text, text, bigint, text);
DROP FUNCTION ledger_capture(text, text, text, bigint, text);
DROP FUNCTION ledger_hold(text, text, text, bigint, text);
DROP FUNCTION ledger_grant(text, text, bigint, text, timestamptz);
DROP FUNCTION ledger_rejected(text, bigint);
DROP FUNCTION ledger_posted(text, bigint, text, text, bigint, text, timestamptz);
DROP FUNCTION ledger_existing(text, text);
DROP FUNCTION ledger_transfer(bigint, bigint, bigint, bigint);
DROP FUNCTION ledger_account_id(text, text);
DROP FUNCTION ledger_lock_tenant(text, boolean);
DROP TYPE ledger_outcome;
"""


def upgrade() -> None:
    with op.batch_alter_table("transactions") as batch:
        batch.drop_constraint(op.f("ck_transactions_kind_known"), type_="check")
        batch.create_check_constraint(
            op.f("ck_transactions_kind_known"),
            "kind IN ('grant', 'hold', 'capture', 'release', 'refund', 'expire')",
        )
        batch.drop_constraint(op.f("ck_transactions_job_id_present"), type_="check")
        batch.create_check_constraint(
            op.f("ck_transactions_job_id_present"),
            "kind IN ('grant', 'expire') OR job_id IS NOT NULL",
        )
    op.create_index(op.f("ix_transactions_tenant_id_id"), "transactions", ["tenant_id", "id"])

    with op.batch_alter_table("holds") as batch:
        batch.add_column(sa.Column("refunded", sa.BigInteger(), nullable=False, server_default="0"))
        batch.create_check_constraint(
            op.f("ck_holds_refunded_within_captured"), "refunded >= 0 AND refunded <= captured"
        )

    op.create_table(
        "lots",
        sa.Column("id", ID_TYPE, primary_key=True),
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("transaction_id", sa.BigInteger(), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("remaining", sa.BigInteger(), nullable=False),
        sa.Column("expired", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expired_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lots")),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["transactions.id"],
            name=op.f("fk_lots_transaction_id_transactions"),
        ),
        sa.UniqueConstraint("transaction_id", name=op.f("uq_lots_transaction_id")),
        sa.CheckConstraint("amount > 0", name=op.f("ck_lots_amount_positive")),
        sa.CheckConstraint(
            "remaining >= 0 AND expired >= 0", name=op.f("ck_lots_parts_not_negative")
        ),
        sa.CheckConstraint(
            "remaining + expired <= amount", name=op.f("ck_lots_parts_within_amount")
        ),
    )
    op.create_index(op.f("ix_lots_tenant_id"), "lots", ["tenant_id"])
    op.create_index(op.f("ix_lots_expires_at"), "lots", ["expires_at"])

    op.create_table(
        "hold_lots",
        sa.Column("job_id", sa.Text(), nullable=False),
        sa.Column("lot_id", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("captured", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("released", sa.BigInteger(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("job_id", "lot_id", name=op.f("pk_hold_lots")),
        sa.ForeignKeyConstraint(
            ["job_id"], ["holds.job_id"], name=op.f("fk_hold_lots_job_id_holds")
        ),
        sa.ForeignKeyConstraint(["lot_id"], ["lots.id"], name=op.f("fk_hold_lots_lot_id_lots")),
        sa.CheckConstraint("amount > 0", name=op.f("ck_hold_lots_amount_positive")),
        sa.CheckConstraint(
            "captured >= 0 AND released >= 0", name=op.f("ck_hold_lots_settled_not_negative")
        ),
        sa.CheckConstraint(
            "captured + released <= amount", name=op.f("ck_hold_lots_settled_within_amount")
        ),
    )

    op.execute(OPENING_LOTS)
    op.execute(OPENING_HOLD_LOTS)

    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        _execute_script(bind, PLPGSQL_FUNCTIONS)
    elif bind.dialect.name == "sqlite":
        _check_sqlite_foreign_keys(bind)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        _execute_script(bind, DROP_PLPGSQL_FUNCTIONS)

    # Refunds, expiries, lots and hold parts have no place in the 0001 schema, so a downgrade
    # works only on a ledger that has none of them.
    op.drop_table("hold_lots")
    op.drop_table("lots")
    with op.batch_alter_table("holds") as batch:
        batch.drop_constraint(op.f("ck_holds_refunded_within_captured"), type_="check")
        batch.drop_column("refunded")
    op.drop_index(op.f("ix_transactions_tenant_id_id"), table_name="transactions")
    with op.batch_alter_table("transactions") as batch:
        batch.drop_constraint(op.f("ck_transactions_job_id_present"), type_="check")
        batch.create_check_constraint(
            op.f("ck_transactions_job_id_present"), "kind = 'grant' OR job_id IS NOT NULL"
        )
        batch.drop_constraint(op.f("ck_transactions_kind_known"), type_="check")
        batch.create_check_constraint(
            op.f("ck_transactions_kind_known"), "kind IN ('grant', 'hold', 'capture', 'release')"
        )
    if bind.dialect.name == "sqlite":
        _check_sqlite_foreign_keys(bind)


def _execute_script(bind: sa.Connection, script: str) -> None:
    # Without parameters psycopg sends the script as one simple query, which may hold several
    # statements and needs no escaping of % or colons.
    bind.exec_driver_sql(script, execution_options={"no_parameters": True})


def _check_sqlite_foreign_keys(bind: sa.Connection) -> None:
    # Foreign keys were off while batch mode copied tables, so check them once at the end.
    violations = bind.exec_driver_sql("PRAGMA foreign_key_check").all()
    if violations:
        raise RuntimeError(f"foreign key violations after the migration: {violations}")
