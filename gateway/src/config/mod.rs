//! Configuration: the data model, its sources (PostgreSQL with the change log, a declarative
//! file, the last-known-good copy on disk) and the node heartbeat.
pub mod certs;
pub mod disk;
pub mod file;
pub mod freshness;
pub mod keys;
pub mod model;
pub mod node;
pub mod node_id;
pub mod pg;
pub mod rules;
pub mod source;
