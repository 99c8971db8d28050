//! Table-driven tests of the decision core, grouped by rule. `fixtures` builds the worlds; each
//! `World::step` also checks that the decision is a fixed point (idempotence).

mod failover;
mod fencing;
mod fixtures;
mod init;
mod convergence;
mod deposed;
mod memory;
mod simulation;
mod standbys;
mod sync;
mod timeline;
