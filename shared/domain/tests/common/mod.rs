//! Shared by the integration tests: the demo story (events/story/failed-deploy-and-fix.json) as delivery messages,
//! the keys of its two executions, and an ingestor over the in-memory ports.
//!
//! Each test file uses a different part of this module, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;
use tollgate_domain::event::{DeliveryEvent, EventBody};
use tollgate_domain::keys::ExecutionKey;
use tollgate_domain::memory::{MemoryNotifier, MemoryStore};
use tollgate_domain::parse::parse_event;
use tollgate_domain::service::{Ingestor, MessageContext};

pub const STORY: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../events/story/failed-deploy-and-fix.json"
));

pub const ACCOUNT: &str = "111122223333";
pub const REGION: &str = "eu-west-1";
pub const PIPELINE: &str = "checkout-service";
/// Execution A: fails in Production (deployment d-RAPGQL0KO, alarm checkout-service-5xx).
pub const EXEC_A: &str = "ed085d02-372a-4b03-ba8a-c1df62a84ced";
/// Execution B: the fix, succeeds.
pub const EXEC_B: &str = "ab085ce4-dd66-42b3-88e3-098729751027";

pub type MemoryIngestor = Ingestor<MemoryStore, MemoryNotifier>;

/// The story's events, in the file's (time) order, one JSON document each, as a queue would deliver them.
pub fn story_values() -> Vec<Value> {
    match serde_json::from_str(STORY).expect("the story is valid JSON") {
        Value::Array(events) => events,
        other => panic!("the story must be a JSON array, found {other}"),
    }
}

pub fn story_bodies() -> Vec<String> {
    story_values().iter().map(Value::to_string).collect()
}

/// The story's events, parsed.
pub fn story_events() -> Vec<DeliveryEvent> {
    story_bodies()
        .iter()
        .map(|b| parse_event(b.as_bytes()).expect("every story event parses"))
        .collect()
}

pub fn exec_key(execution_id: &str) -> ExecutionKey {
    ExecutionKey {
        account: ACCOUNT.into(),
        region: REGION.into(),
        pipeline: PIPELINE.into(),
        execution_id: execution_id.into(),
    }
}

/// The time of the story's pipeline-level event of `execution_id` in `state`.
pub fn pipeline_event_time(execution_id: &str, state: &str) -> DateTime<Utc> {
    story_events()
        .into_iter()
        .find_map(|e| match &e.body {
            EventBody::PipelineExecution(p) if p.execution_id == execution_id && p.state == state => Some(e.time),
            _ => None,
        })
        .unwrap_or_else(|| panic!("the story has no {state} event for execution {execution_id}"))
}

/// Index, in the story, of the first event matching `pred`.
pub fn story_index(pred: impl Fn(&DeliveryEvent) -> bool) -> usize {
    story_events()
        .iter()
        .position(pred)
        .expect("the story has such an event")
}

pub fn ctx(message_id: impl Into<String>) -> MessageContext {
    MessageContext {
        message_id: message_id.into(),
        received_at: Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0).unwrap(),
    }
}

pub fn ingestor() -> (MemoryIngestor, Arc<MemoryStore>, Arc<MemoryNotifier>) {
    let store = Arc::new(MemoryStore::new());
    let notifier = Arc::new(MemoryNotifier::new());
    (Ingestor::new(store.clone(), notifier.clone()), store, notifier)
}
