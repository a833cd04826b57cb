//! Tollgate's `changeset` function (being built).
