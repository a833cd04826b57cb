//! Tollgate's benchmark harness (being built).
