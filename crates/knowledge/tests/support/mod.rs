//! Test support: a fake Qdrant gRPC server and builders of real document files.
#![allow(dead_code)]

pub mod fake_qdrant;
pub mod files;
