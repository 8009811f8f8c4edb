//! The `earshot` binary's library half: the embedded mode, which runs all four stages in one
//! process over the in-memory bus, shared with the end-to-end tests, and the line-oriented
//! `earshot sentiment` command.

pub mod embedded;
pub mod sentiment;
