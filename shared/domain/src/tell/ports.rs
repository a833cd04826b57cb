//! The port through which notifications reach engineers, and its failure.

use async_trait::async_trait;

use crate::tell::notify::Notification;

/// A notifier failure. Every failure is worth a retry: the event is already recorded and the notification is only
/// marked sent once it was published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("notification not published: {0}")]
pub struct NotifyError(pub String);

/// Publishes notifications to engineers.
#[async_trait]
pub trait Notifier: Send + Sync {
    async fn publish(&self, notification: &Notification) -> Result<(), NotifyError>;
}
