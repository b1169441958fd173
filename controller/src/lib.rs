//! The control plane. It decides what is replicated; it never reads or
//! writes records.

pub mod admin;
pub mod alter_configs;
pub mod checkpoint;
pub mod discovery;
pub mod planner;
