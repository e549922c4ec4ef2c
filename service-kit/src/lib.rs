//! placeholder
pub mod config;
pub mod logging;
