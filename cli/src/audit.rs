//! `tollgate audit list` and `tollgate audit verify`: a scope's audit trail for people, read from the table (or any
//! [`AuditLog`]). Verification is the domain's ([`tollgate_domain::audit::verify`]); this module only says it.

use std::fmt::Write;

use tollgate_domain::audit::{check, AuditBreak, AuditEntry, AuditLog};
use tollgate_domain::record::ports::StoreError;

/// Width at which an entry's detail is cut in listings.
const DETAIL_WIDTH: usize = 80;

/// Why `verify` did not vouch for a log.
#[derive(Debug, thiserror::Error)]
pub enum VerifyFailed {
    /// The log was tampered with (or damaged): the first broken link.
    #[error("audit log of `{scope}` is broken at entry {}: {found}", found.seq())]
    Broken { scope: String, found: AuditBreak },
    /// The log could not be read.
    #[error("cannot verify the audit log of `{scope}`: {source}")]
    Store {
        scope: String,
        #[source]
        source: StoreError,
    },
}

/// The newest `limit` entries of `scope`, newest first, one line each, under a line saying how long the log is.
pub async fn list<L: AuditLog + ?Sized>(store: &L, scope: &str, limit: usize) -> Result<String, StoreError> {
    let head = store.head(scope).await?;
    let entries = store.recent(scope, limit).await?;
    let mut out = match &head {
        None => format!("audit log of `{scope}`: no entries\n"),
        Some(h) => format!(
            "audit log of `{scope}`: {} entries (HEAD {}), newest first\n",
            h.seq,
            short(&h.hash)
        ),
    };
    if entries.is_empty() {
        return Ok(out);
    }
    let _ = writeln!(
        out,
        "{:>5}  {:<23}  {:<18}  {:<40}  {:<24}  detail",
        "seq", "at (UTC)", "action", "actor", "subject"
    );
    for e in &entries {
        out.push_str(&line(e));
        out.push('\n');
    }
    Ok(out)
}

/// Verifies `scope`'s log: Ok with what was verified (and the last hash, to keep elsewhere), or the first broken
/// link.
pub async fn verify<L: AuditLog + ?Sized>(store: &L, scope: &str) -> Result<String, VerifyFailed> {
    match check(store, scope).await {
        Ok(Ok(report)) => Ok(format!("{report}\n")),
        Ok(Err(found)) => Err(VerifyFailed::Broken {
            scope: scope.to_string(),
            found,
        }),
        Err(source) => Err(VerifyFailed::Store {
            scope: scope.to_string(),
            source,
        }),
    }
}

fn line(e: &AuditEntry) -> String {
    let detail = serde_json::to_string(&e.detail).unwrap_or_default();
    format!(
        "{:>5}  {:<23}  {:<18}  {:<40}  {:<24}  {}",
        e.seq,
        e.at.format("%Y-%m-%d %H:%M:%S%.3f"),
        e.action,
        e.actor,
        e.subject,
        cut(&detail, DETAIL_WIDTH)
    )
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let kept: String = text.chars().take(width - 1).collect();
    format!("{kept}…")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Duration, Utc};
    use serde_json::json;
    use tollgate_domain::audit::{action, NewAuditEntry};
    use tollgate_domain::memory::MemoryAuditLog;

    const SCOPE: &str = "pipeline:111122223333/eu-west-1/checkout-service";

    async fn log_with(n: i64) -> MemoryAuditLog {
        let log = MemoryAuditLog::new();
        let t0: DateTime<Utc> = "2026-11-20T09:00:00Z".parse().unwrap();
        for i in 1..=n {
            log.append(NewAuditEntry {
                scope: SCOPE.into(),
                at: t0 + Duration::minutes(i),
                actor: "arn:aws:iam::111122223333:user/alice".into(),
                action: action::APPROVAL_APPROVE.into(),
                subject: format!("execution-{i}"),
                detail: json!({ "stage": "Production", "comment": "x".repeat(100) }),
            })
            .await
            .unwrap();
        }
        log
    }

    #[tokio::test]
    async fn list_shows_the_newest_entries_first() {
        let log = log_with(5).await;
        let text = list(&log, SCOPE, 2).await.unwrap();
        println!("{text}");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(
            lines[0].starts_with(&format!("audit log of `{SCOPE}`: 5 entries (HEAD ")),
            "{text}"
        );
        assert!(
            lines[2].starts_with("    5  2026-11-20 09:05:00.000  approval.approve"),
            "{text}"
        );
        assert!(lines[2].contains("execution-5") && lines[2].ends_with('…'), "{text}");
        assert!(lines[3].starts_with("    4  "), "{text}");
        assert_eq!(
            list(&log, "global", 10).await.unwrap(),
            "audit log of `global`: no entries\n"
        );
    }

    #[tokio::test]
    async fn verify_says_what_it_vouches_for_or_the_first_broken_link() {
        let log = log_with(5).await;
        let ok = verify(&log, SCOPE).await.unwrap();
        assert!(ok.contains("5 entries, chained from genesis"), "{ok}");
        log.tamper(SCOPE, |entries, _| entries.remove(2));
        let err = verify(&log, SCOPE).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("audit log of `{SCOPE}` is broken at entry 3: seq 3 is missing: entries jump from 2 to 4")
        );
    }
}
