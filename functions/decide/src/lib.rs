//! Tollgate's `decide` function: the one server-side entry point for human decisions (docs/approvals.md). It sits
//! behind a function URL with `AuthType: AWS_IAM`: Lambda checks the caller's SigV4 signature and puts the caller's
//! identity in the request context, which is the only place the function reads it from. The time of every record is
//! the function's clock.

pub mod config;
pub mod handler;
