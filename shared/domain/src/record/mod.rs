//! Record: what Tollgate knows about a delivery. Keys, the delivery event model, parsing of EventBridge events,
//! the timeline folded from events, queries over it, and the store ports ([`ports`]) through which events are
//! recorded and read back.
//!
//! May depend on: nothing else in this crate (every other module builds on it).

pub mod event;
pub mod keys;
pub mod parse;
pub mod ports;
pub mod query;
pub mod timeline;
