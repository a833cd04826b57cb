//! Tollgate's domain: the delivery events it records, the timeline folded from them, the notifications engineers
//! get, and the ports (traits) through which it reaches storage and messaging. No AWS SDK here: adapters live in
//! `tollgate-aws`, in-memory ones in [`memory`].

pub mod audit;
pub mod changeset;
pub mod chat;
pub mod event;
pub mod gate;
pub mod guard;
pub mod hook;
pub mod keys;
pub mod memory;
pub mod metrics;
pub mod notify;
pub mod parse;
pub mod policy;
pub mod ports;
pub mod query;
pub mod service;
pub mod timeline;
