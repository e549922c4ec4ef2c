//! An L7 (HTTP/1.1) reverse proxy and load balancer, built on the workspace's `http1` layer.
//!
//! | module | what it holds |
//! |---|---|
//! | [`config`] | listeners, routes and clusters from TOML or the quick-start flags; `validate` |
//! | [`balance`] | the balancing algorithms, one file each, behind one trait |

pub mod balance;
pub mod config;
