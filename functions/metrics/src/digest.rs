//! Publishing the weekly digest at most once per period, whatever the retries: the claim protocol of notifications
//! (claim the digest's key, publish, mark it sent; release the claim if the publish fails) over a [`DigestLog`].

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tollgate_domain::record::ports::{Mark, StoreError};
use tollgate_domain::tell::notify::Notification;
use tollgate_domain::tell::ports::{Notifier, NotifyError};

use crate::ports::DigestLog;

/// How long a digest claim protects its holder: the function's timeout (300 s in infra/template.yaml). A claim older
/// than that has no live holder (Lambda has ended the invocation), so taking it over can never publish twice; a
/// younger one may still be publishing, so the run fails and is retried rather than risk a second message.
pub const DIGEST_LEASE: chrono::Duration = chrono::Duration::seconds(300);

/// What became of a digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestOutcome {
    /// Published by this call.
    Published,
    /// Published before (by an earlier attempt or a concurrent run): nothing sent.
    AlreadySent,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// Another run claimed the digest less than [`DIGEST_LEASE`] ago and has not marked it sent.
    #[error("digest {key} is being published by another run (claimed at {claimed_at}); retry later")]
    InFlight { key: String, claimed_at: DateTime<Utc> },
    #[error("digest {key}: marker not written: {source}")]
    Store {
        key: String,
        #[source]
        source: StoreError,
    },
    #[error("digest {key} not published (its claim was released, a retry publishes it): {source}")]
    Publish {
        key: String,
        #[source]
        source: NotifyError,
    },
}

/// Publishes a digest unless one with the same key was published before.
#[async_trait]
pub trait DigestPublisher: Send + Sync {
    /// `run_id` identifies the attempt in the claim (the Lambda request id).
    async fn publish_once(&self, digest: &Notification, run_id: &str) -> Result<DigestOutcome, DigestError>;
}

/// [`DigestPublisher`] with the claim protocol over a [`DigestLog`] and a [`Notifier`].
pub struct ClaimedDigest<L, N> {
    log: Arc<L>,
    notifier: Arc<N>,
}

impl<L, N> ClaimedDigest<L, N> {
    pub fn new(log: Arc<L>, notifier: Arc<N>) -> Self {
        ClaimedDigest { log, notifier }
    }
}

#[async_trait]
impl<L: DigestLog, N: Notifier> DigestPublisher for ClaimedDigest<L, N> {
    #[tracing::instrument(skip_all, fields(key = %digest.key, run_id = %run_id))]
    async fn publish_once(&self, digest: &Notification, run_id: &str) -> Result<DigestOutcome, DigestError> {
        let key = digest.key.as_str();
        let store = |source| DigestError::Store {
            key: key.to_string(),
            source,
        };
        let now = Utc::now();
        let claim = Mark::Claimed {
            at: now,
            token: run_id.to_string(),
        };
        match self.log.claim(key, &claim, now - DIGEST_LEASE).await.map_err(store)? {
            None => {}
            Some(Mark::Sent) => {
                tracing::info!("digest already sent: nothing to do");
                return Ok(DigestOutcome::AlreadySent);
            }
            Some(Mark::Claimed { at, token }) => {
                tracing::warn!(claimed_at = %at, holder = token, "digest claimed by another run");
                return Err(DigestError::InFlight {
                    key: key.to_string(),
                    claimed_at: at,
                });
            }
        }
        if let Err(source) = self.notifier.publish(digest).await {
            // Let the next attempt claim at once; if the release fails too, the claim expires after the lease.
            if let Err(e) = self.log.release(key, &claim).await {
                tracing::warn!(error = %e, "could not release the digest claim");
            }
            return Err(DigestError::Publish {
                key: key.to_string(),
                source,
            });
        }
        if !self.log.finish(key, &claim).await.map_err(store)? {
            tracing::warn!("the digest claim was taken over before it was marked sent");
        }
        tracing::info!("digest published");
        Ok(DigestOutcome::Published)
    }
}

#[cfg(test)]
mod tests {
    use tollgate_domain::memory::MemoryNotifier;
    use tollgate_domain::tell::notify::{NotificationKind, Severity};

    use super::*;
    use crate::ports::MemoryDigestLog;

    fn digest() -> Notification {
        Notification {
            key: "weekly_digest@2026-11-23".into(),
            kind: NotificationKind::WeeklyDigest,
            severity: Severity::Info,
            account: "111122223333".into(),
            region: "eu-west-1".into(),
            pipeline: None,
            thread: "weekly_digest@2026-11-23".into(),
            title: "Delivery digest".into(),
            lines: vec!["2 production deployments".into()],
            next_steps: vec![],
            link: None,
            resources: vec![],
        }
    }

    fn publisher() -> (
        ClaimedDigest<MemoryDigestLog, MemoryNotifier>,
        Arc<MemoryDigestLog>,
        Arc<MemoryNotifier>,
    ) {
        let (log, notifier) = (Arc::new(MemoryDigestLog::new()), Arc::new(MemoryNotifier::new()));
        (ClaimedDigest::new(log.clone(), notifier.clone()), log, notifier)
    }

    #[tokio::test]
    async fn a_digest_is_published_once_and_marked_sent() {
        let (publisher, log, notifier) = publisher();
        assert_eq!(
            publisher.publish_once(&digest(), "r-1").await.unwrap(),
            DigestOutcome::Published
        );
        assert_eq!(
            publisher.publish_once(&digest(), "r-2").await.unwrap(),
            DigestOutcome::AlreadySent
        );
        assert_eq!(notifier.sent(), vec![digest()]);
        assert_eq!(log.marker("weekly_digest@2026-11-23"), Some(Mark::Sent));
    }

    #[tokio::test]
    async fn a_failed_publish_releases_the_claim_so_a_retry_publishes() {
        let (publisher, log, notifier) = publisher();
        notifier.fail_next(1);
        let err = publisher.publish_once(&digest(), "r-1").await.unwrap_err();
        assert!(matches!(err, DigestError::Publish { .. }), "{err:?}");
        assert_eq!(log.marker("weekly_digest@2026-11-23"), None, "released");
        assert_eq!(
            publisher.publish_once(&digest(), "r-1").await.unwrap(),
            DigestOutcome::Published
        );
        assert_eq!(notifier.sent().len(), 1);
    }

    #[tokio::test]
    async fn a_fresh_claim_of_another_run_is_not_published_over() {
        let (publisher, log, notifier) = publisher();
        let theirs = Mark::Claimed {
            at: Utc::now() - chrono::Duration::seconds(30),
            token: "r-0".into(),
        };
        log.claim("weekly_digest@2026-11-23", &theirs, Utc::now() - DIGEST_LEASE)
            .await
            .unwrap();
        let err = publisher.publish_once(&digest(), "r-1").await.unwrap_err();
        assert!(matches!(err, DigestError::InFlight { .. }), "{err:?}");
        assert!(notifier.sent().is_empty());
    }

    #[tokio::test]
    async fn a_claim_older_than_the_lease_is_taken_over() {
        let (publisher, log, notifier) = publisher();
        let dead = Mark::Claimed {
            at: Utc::now() - DIGEST_LEASE - chrono::Duration::seconds(1),
            token: "r-0".into(),
        };
        log.claim(
            "weekly_digest@2026-11-23",
            &dead,
            Utc::now() - chrono::Duration::days(1),
        )
        .await
        .unwrap();
        assert_eq!(
            publisher.publish_once(&digest(), "r-1").await.unwrap(),
            DigestOutcome::Published
        );
        assert_eq!(notifier.sent().len(), 1);
    }
}
