//! Streaming a fetched document to a file (a CRL from a URL), never held whole in memory.

use std::path::Path;
use std::time::Duration;

use http::header;
use http_body_util::BodyExt;

use super::{FetchError, Fetcher, Validators};

/// A document downloaded to a file: its SHA-256 and the validators to ask with next time.
pub struct Downloaded {
    pub digest: [u8; 32],
    pub validators: Validators,
}

impl Fetcher {
    /// One conditional GET within `timeout`, the body streamed to `to` (never held whole in
    /// memory) and refused as soon as it is known to exceed `max_bytes` — from its declared
    /// length, or while it arrives. `Ok(None)`: not modified. On any error `to` is removed.
    pub async fn download(
        &self,
        last: &Validators,
        max_bytes: usize,
        timeout: Duration,
        to: &Path,
    ) -> Result<Option<Downloaded>, FetchError> {
        let result = tokio::time::timeout(timeout, self.stream_to(last, max_bytes, to))
            .await
            .unwrap_or(Err(FetchError::Timeout(timeout)));
        if result.is_err() {
            let _ = tokio::fs::remove_file(to).await;
        }
        result
    }

    async fn stream_to(
        &self,
        last: &Validators,
        max_bytes: usize,
        to: &Path,
    ) -> Result<Option<Downloaded>, FetchError> {
        use tokio::io::AsyncWriteExt;
        let Some((resp, validators)) = self.conditional_get(last).await? else {
            return Ok(None);
        };
        let declared = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max_bytes as u64) {
            return Err(FetchError::TooLarge(max_bytes));
        }
        if let Some(dir) = to.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(FetchError::Cache)?;
        }
        let mut file = tokio::fs::File::create(to)
            .await
            .map_err(FetchError::Cache)?;
        let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        let mut body = resp.into_body();
        let mut total = 0usize;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| FetchError::Body(e.to_string()))?;
            let Ok(chunk) = frame.into_data() else {
                continue;
            };
            total += chunk.len();
            if total > max_bytes {
                return Err(FetchError::TooLarge(max_bytes));
            }
            digest.update(&chunk);
            file.write_all(&chunk).await.map_err(FetchError::Cache)?;
        }
        file.sync_all().await.map_err(FetchError::Cache)?;
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(digest.finish().as_ref());
        Ok(Some(Downloaded {
            digest: sha256,
            validators,
        }))
    }
}
