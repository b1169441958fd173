//! The control plane. It decides what is replicated; it never reads or
//! writes records.

pub mod admin;
pub mod api;
pub mod checkpoint;
pub mod discovery;
pub mod leader;
pub mod metadata;
pub mod native_admin;
pub mod planner;
pub mod read_model;
pub mod replan;
