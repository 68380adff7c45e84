//! The sync task's state: the connection, the batch in flight, and the batch ids. Owned by one
//! background task; nothing here is shared with requests.

use std::path::PathBuf;

use tokio_postgres::Client;

use super::batch::Batch;
use super::{connect, schema};
use crate::inventory::Inventory;
use crate::inventory::InventoryError;

/// Rows per batch (one transaction each): bounds the memory and the length of a transaction
/// when much is pending (a first sync, or after an outage).
const BATCH_ROWS: usize = 10_000;

/// What one sync attempt did.
#[derive(Debug, PartialEq, Eq)]
pub enum Synced {
    /// This many rows committed (0: nothing was pending).
    Rows(usize),
    /// The database already had the retried batch.
    AlreadyApplied(usize),
}

pub struct FleetSink {
    pub gateway_id: String,
    /// Distinguishes this process's batch numbers from an earlier run's.
    boot_id: i64,
    next_seq: i64,
    /// The URL and CA the connection was made with: a reload that changes them reconnects.
    target: Option<(String, Option<PathBuf>)>,
    client: Option<Client>,
    /// A batch whose commit failed or was not acknowledged: retried as it is before any new
    /// one, so its counts are applied exactly once.
    in_flight: Option<Batch>,
    /// The last attempt failed (for logging transitions only).
    pub failing: bool,
}

impl FleetSink {
    pub fn new(gateway_id: String) -> Self {
        let boot_id = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64)
            ^ i64::from(std::process::id());
        Self {
            gateway_id,
            boot_id,
            next_seq: 1,
            target: None,
            client: None,
            in_flight: None,
            failing: false,
        }
    }

    /// Rows waiting for the database: the batch in flight, or what a batch would carry now.
    pub fn pending(&self, inventory: &Inventory) -> usize {
        match &self.in_flight {
            Some(b) => b.rows(),
            None => Batch::pending(inventory),
        }
    }

    /// One sync: connect (and migrate) if needed, retry the batch in flight, else send what is
    /// new. On an error the connection is dropped and everything stays pending.
    pub async fn sync(
        &mut self,
        inventory: &Inventory,
        url: &str,
        ca: Option<&PathBuf>,
    ) -> Result<Synced, InventoryError> {
        let target = (url.to_string(), ca.cloned());
        if self.target.as_ref() != Some(&target)
            || self.client.as_ref().is_none_or(Client::is_closed)
        {
            self.client = None;
            let mut client = connect::connect(url, ca.map(PathBuf::as_path)).await?;
            let found = schema::migrate(&mut client)
                .await
                .map_err(InventoryError::database("creating the schema: "))?;
            if found < schema::latest() {
                tracing::info!(target: "certgate::inventory", from = found, to = schema::latest(), "fleet inventory schema migrated");
            }
            self.client = Some(client);
            self.target = Some(target);
        }
        // Batch after batch until a batch is not full (what traffic adds meanwhile waits for
        // the next sync); the first error stops, and keeps, the batch.
        let mut total = Synced::Rows(0);
        loop {
            let retry = self.in_flight.is_some();
            let done = match self.send(inventory).await {
                Ok(done) => done,
                Err(e) => {
                    self.client = None;
                    return Err(e);
                }
            };
            let (Synced::Rows(n) | Synced::AlreadyApplied(n)) = done;
            total = match (total, done) {
                (Synced::Rows(t), Synced::Rows(_)) => Synced::Rows(t + n),
                (Synced::Rows(t) | Synced::AlreadyApplied(t), _) => Synced::AlreadyApplied(t + n),
            };
            if !retry && n < BATCH_ROWS {
                return Ok(total);
            }
        }
    }

    async fn send(&mut self, inventory: &Inventory) -> Result<Synced, InventoryError> {
        let batch = match self.in_flight.take() {
            Some(b) => b,
            None => {
                let b = Batch::collect(inventory, self.next_seq, BATCH_ROWS);
                if b.rows() == 0 {
                    return Ok(Synced::Rows(0));
                }
                self.next_seq += 1;
                b
            }
        };
        let Some(client) = self.client.as_mut() else {
            self.in_flight = Some(batch);
            return Err(InventoryError::NotConnected);
        };
        let chain = InventoryError::database("");
        let outcome = async {
            let tx = client.transaction().await.map_err(chain)?;
            let fresh = batch
                .apply(&tx, &self.gateway_id, self.boot_id)
                .await
                .map_err(chain)?;
            tx.commit().await.map_err(chain)?;
            Ok::<_, InventoryError>(fresh)
        }
        .await;
        match outcome {
            Ok(fresh) => {
                batch.acknowledge();
                let n = batch.rows();
                Ok(if fresh {
                    Synced::Rows(n)
                } else {
                    Synced::AlreadyApplied(n)
                })
            }
            Err(e) => {
                self.in_flight = Some(batch);
                Err(e)
            }
        }
    }
}
