//! The fleet inventory's schema, as versioned migrations in the binary: the first gateway to
//! connect to an empty database creates it; later versions add migrations at the end. Two
//! gateways starting at once serialise on an advisory lock.

use tokio_postgres::Client;

/// Arbitrary, fixed: the advisory lock every certgate takes while migrating.
const MIGRATION_LOCK: i64 = 0x6365_7274_6761_7465; // "certgate"

/// (version, SQL), in order. Never edit one that shipped: add the next.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        r"
CREATE TABLE certgate_credentials (
    sha256      text PRIMARY KEY,
    subject     text NOT NULL,
    issuer      text NOT NULL,
    serial      text NOT NULL,
    not_before  timestamptz NOT NULL,
    not_after   timestamptz NOT NULL,
    owner       text,
    first_seen  timestamptz NOT NULL,
    last_seen   timestamptz NOT NULL
);
CREATE TABLE certgate_sightings (
    sha256      text NOT NULL REFERENCES certgate_credentials (sha256) ON DELETE CASCADE,
    gateway_id  text NOT NULL,
    route       text NOT NULL,
    first_seen  timestamptz NOT NULL,
    last_seen   timestamptz NOT NULL,
    allowed     bigint NOT NULL DEFAULT 0,
    refused     bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (sha256, gateway_id, route)
);
CREATE INDEX certgate_sightings_gateway ON certgate_sightings (gateway_id);
CREATE TABLE certgate_gateways (
    gateway_id  text PRIMARY KEY,
    last_sync   timestamptz NOT NULL
);
-- Batches already applied, so a retried batch is not counted twice.
CREATE TABLE certgate_batches (
    gateway_id  text NOT NULL,
    boot_id     bigint NOT NULL,
    seq         bigint NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (gateway_id, boot_id, seq)
);
",
    ),
    (
        2,
        r"
-- The register holds every credential kind; revocation is shared by the fleet.
ALTER TABLE certgate_credentials
    ADD COLUMN kind text NOT NULL DEFAULT 'certificate',
    ADD COLUMN revoked_at timestamptz;
",
    ),
];

/// Brings the schema to the latest version; returns the version it found.
pub async fn migrate(client: &mut Client) -> Result<i32, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS certgate_schema (
             version     integer PRIMARY KEY,
             applied_at  timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let found: i32 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM certgate_schema", &[])
        .await?
        .get(0);
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > found) {
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO certgate_schema (version) VALUES ($1)",
            &[version],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(found)
}

/// The version this binary brings the schema to.
pub fn latest() -> i32 {
    MIGRATIONS.last().map_or(0, |(v, _)| *v)
}
