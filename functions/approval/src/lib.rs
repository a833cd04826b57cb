//! Tollgate's `approval` function: the chat approval endpoint (a function URL whose requests are authenticated by
//! HMAC signatures) and the subscriber of CodePipeline Manual approval notifications (docs/approvals.md).

pub mod config;
pub mod handler;
