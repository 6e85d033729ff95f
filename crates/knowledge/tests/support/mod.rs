//! Test support: builders of real document files (the fake Qdrant server is in
//! `callfleet_testkit::qdrant`).
#![allow(dead_code)]

pub mod files;
