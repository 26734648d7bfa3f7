//! Shared by the integration tests (`mod common;`). Each test binary uses only part of it.
#![allow(dead_code)]

pub mod cluster;
pub mod workload;
