//! Tollgate's `approval` function (being built).
