-- The records service's schema. See docs/records.md for what each table
-- holds and the guarantees built on it.

-- +goose Up

-- events: one row per distinct ce_id ever read from the topic, of every type,
-- known or not. A record without a ce_id is kept under the id
-- "kafka:<topic>/<partition>/<offset>", which a replay reproduces.
CREATE TABLE events (
    ce_id           text PRIMARY KEY,
    ce_type         text NOT NULL,
    ce_source       text NOT NULL DEFAULT '',
    ce_time         timestamptz,
    card_token      text,
    known           boolean NOT NULL,
    reverses        text,
    -- value is the record body verbatim, kept only for records this
    -- service does not understand (unknown ce_type or malformed), so that
    -- nothing is dropped; understood bodies live in card_history.
    value           bytea,
    topic           text NOT NULL,
    kafka_partition integer NOT NULL,
    kafka_offset    bigint NOT NULL,
    applied_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_reverses ON events (reverses) WHERE reverses IS NOT NULL;
CREATE INDEX events_unknown ON events (ce_type) WHERE NOT known;

-- card_history: one row per understood event that names a card, in the
-- order applied. No PAN, not even masked: the card token is the key.
CREATE TABLE card_history (
    seq           bigserial PRIMARY KEY,
    ce_id         text NOT NULL UNIQUE REFERENCES events (ce_id),
    card_token    text NOT NULL,
    ce_type       text NOT NULL,
    operation     text NOT NULL,
    outcome       text NOT NULL,
    response_code text NOT NULL,
    reason        text NOT NULL DEFAULT '',
    channel       text NOT NULL,
    acquirer      text NOT NULL,
    terminal      text NOT NULL DEFAULT '',
    issuer        text NOT NULL DEFAULT '',
    teller        text NOT NULL DEFAULT '',
    supervisor    text NOT NULL DEFAULT '',
    received      timestamptz NOT NULL,
    completed     timestamptz NOT NULL,
    -- reverses: on an acquirer's reversal, the ce_id it undoes.
    reverses      text,
    -- reversed_by/reversed_at: on an undone operation, the reversal's ce_id
    -- and time. Set once: the first reversal applied wins.
    reversed_by   text,
    reversed_at   timestamptz
);
CREATE INDEX card_history_card ON card_history (card_token, seq);
CREATE INDEX card_history_card_completed ON card_history (card_token, completed);

-- consumer_offsets: the next offset to read per consumer group and
-- partition, written in the same transaction as the events it covers.
-- -2 means "the first offset the broker still holds" (kafka-go FirstOffset).
CREATE TABLE consumer_offsets (
    consumer_group  text NOT NULL,
    topic           text NOT NULL,
    kafka_partition integer NOT NULL,
    next_offset     bigint NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, kafka_partition)
);

-- statements_sent: one row per card and month whose statement was written.
CREATE TABLE statements_sent (
    card_token text NOT NULL,
    period     text NOT NULL,
    sent_at    timestamptz NOT NULL DEFAULT now(),
    file       text NOT NULL,
    operations integer NOT NULL,
    PRIMARY KEY (card_token, period)
);

-- +goose Down
DROP TABLE statements_sent;
DROP TABLE consumer_offsets;
DROP TABLE card_history;
DROP TABLE events;
