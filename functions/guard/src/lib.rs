//! Tollgate's `guard` function (being built).
