//! Tollgate's `hook` function (being built).
