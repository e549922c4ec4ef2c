//! The local cluster: every server of the workspace started together, faults injected from a
//! second terminal, and a load generator to watch the guarantees hold while they are.
//!
//! ```text
//!   cluster up ──▶ cluster.toml ──▶ Topology ──▶ Cluster::start ──▶ control API on control_listen
//!                  (topology.rs)    (instances,   (supervisor.rs:     (control.rs: status, kill,
//!                                    links)        links, processes    pause, resume, restart,
//!                                                  in tiers, ready)    partition, heal, latency)
//!   cluster status | kill | ... ──▶ control API ──▶ Cluster methods ──▶ harness::Process / FaultProxy
//!   cluster load ──▶ load/ (open-loop requests through the reverse proxy, live progress)
//! ```
//!
//! | module | what it holds |
//! |---|---|
//! | `topology` | `cluster.toml`, its defaults and checks; instance names and addresses; who talks to whom |
//! | `render` | each instance's command line, and the gateway's and proxy's generated config files |
//! | `links` | a fault proxy on every path between two instances: partitions, latency |
//! | `supervisor` | start in dependency order, readiness, the state of each member, restart, drain |
//! | `control` | the launcher's HTTP control API and the client the other subcommands use |
//! | `load` | the case-study workload at a fixed rate, errors by kind, latency percentiles |
//!
//! Processes and fault proxies come from the `harness` crate, the same code the tests use to
//! kill and partition servers: the launcher is those tools given a command line.

pub mod control;
pub mod links;
pub mod load;
pub mod render;
pub mod supervisor;
pub mod topology;

pub use supervisor::{Binaries, Cluster, ClusterStatus, MemberStatus, Options, State};
pub use topology::{Instance, Kind, Topology};
