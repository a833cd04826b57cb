//! The in-memory audit log.

use crate::audit::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::record::ports::StoreError;

/// The in-memory audit log, for unit tests and offline use. Appends use the same optimistic protocol as the DynamoDB
/// adapter ([`append_chained`]), and reading HEAD yields to other tasks, so concurrent appenders really collide.
#[derive(Default)]
pub struct MemoryAuditLog {
    scopes: Mutex<HashMap<String, Stored>>,
    conflicts: AtomicU64,
}

#[derive(Default)]
struct Stored {
    /// In storage order: seq order, unless a test tampered with it.
    entries: Vec<AuditEntry>,
    head: Option<AuditHead>,
}

impl MemoryAuditLog {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Stored>> {
        self.scopes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Conditional appends refused because another appender had moved HEAD.
    pub fn conflicts(&self) -> u64 {
        self.conflicts.load(Ordering::Relaxed)
    }

    /// Direct access to a scope's stored entries and HEAD, bypassing the log, as someone with write access to the
    /// table has: for tests that tamper with the log.
    pub fn tamper<R>(&self, scope: &str, change: impl FnOnce(&mut Vec<AuditEntry>, &mut Option<AuditHead>) -> R) -> R {
        let mut scopes = self.lock();
        let stored = scopes.entry(scope.to_string()).or_default();
        change(&mut stored.entries, &mut stored.head)
    }
}

#[async_trait]
impl AuditLog for MemoryAuditLog {
    async fn head(&self, scope: &str) -> Result<Option<AuditHead>, StoreError> {
        let head = self.lock().get(scope).and_then(|s| s.head.clone());
        // A remote store answers later; let other appenders run in between, as they would.
        tokio::task::yield_now().await;
        Ok(head)
    }

    async fn entries(&self, scope: &str) -> Result<Vec<AuditEntry>, StoreError> {
        Ok(self.lock().get(scope).map(|s| s.entries.clone()).unwrap_or_default())
    }

    async fn append_after(
        &self,
        entry: &AuditEntry,
        expected: Option<&AuditHead>,
    ) -> Result<AppendOutcome, StoreError> {
        let mut scopes = self.lock();
        let stored = scopes.entry(entry.scope.clone()).or_default();
        if stored.head.as_ref() != expected || stored.entries.iter().any(|e| e.seq == entry.seq) {
            self.conflicts.fetch_add(1, Ordering::Relaxed);
            return Ok(AppendOutcome::Conflict {
                current: stored.head.clone(),
            });
        }
        stored.entries.push(entry.clone());
        stored.head = Some(entry.as_head());
        Ok(AppendOutcome::Written)
    }
}
