//! Chat platforms: the `/rollback` command language shared by all of them
//! ([`commands`]), the one [`handler`] of commands and votes for every
//! platform, the neutral answer to a command ([`reply`]), the numbers of
//! `/rollback stats` ([`stats`]) and the
//! [`failure`] split between a person's mistakes and rollbot's own, the
//! [`router`] that sends each message to its channel's platform, and the
//! adapters implementing the engine's [`Chat`](crate::ports::Chat) port:
//! [`slack`], [`console`] (a terminal transcript for the demo) and [`none`].
//!
//! Channels are written `platform:channel` in configuration (e.g.
//! `slack:C0123ABCD`); user ids are `platform:id` (`slack:U012AB3CD`).

pub mod commands;
pub mod console;
pub mod failure;
pub mod handler;
pub mod none;
pub mod reply;
pub mod router;
pub mod slack;
pub mod stats;
