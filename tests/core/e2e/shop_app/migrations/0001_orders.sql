-- The shop's own table, in the user's schema (public): pgjobs creates nothing here.
CREATE TABLE orders (
    id              bigserial PRIMARY KEY,
    customer        text NOT NULL,
    total_cents     integer NOT NULL,
    status          text NOT NULL DEFAULT 'new' CHECK (status IN ('new', 'paid', 'declined', 'expired')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    paid_at         timestamptz,
    receipt_sent_at timestamptz
);
