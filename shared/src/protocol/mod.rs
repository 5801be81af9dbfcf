//! The Redis protocol, in one place: the key space ([`keys`]), the queue message ([`message`]), and one file
//! per operation holding its Lua script (beside it, `<operation>.lua`), its Rust wrapper and its contract.
//! Every script is registered in [`scripts`], which puts the shared Lua helpers (`prelude.lua`: the key
//! builders mirroring [`Keys`], ending a lease, acknowledging an entry) in front of it.
//!
//! | operation | file | atomic |
//! |---|---|---|
//! | charge a submission to its tenant's rate limit (API) | [`submit_rate`] | `submit_rate.lua` |
//! | enqueue an attempt (API, reconciler, retry promotion) | [`enqueue`] | `enqueue.lua` |
//! | admit under the limits and take leases | [`admit`] | `admit.lua` |
//! | heartbeat: renew leases, see cancellations | [`renew`] | `renew.lua` |
//! | take over expired leases | [`takeover`] | `takeover.lua` |
//! | release leases of finished attempts | [`release`] | `release.lua` |
//! | delay a failed attempt, promote due retries | [`retry`] | `retry.lua`, then `enqueue.lua` |
//! | withdraw a waiting execution, request a cancel | [`withdraw`] | `withdraw.lua` |
//! | dead-letter a message; list, read, delete, trim | [`dead_letter`] | `dead_letter.lua` |
//! | hand a lease back at the end of a drain | [`hand_back`] | `hand_back.lua` |
//! | limits: publish defaults and overrides, read the effective ones | [`limits`] | |
//! | status and progress streams: append, consume, read | [`streams`] | |
//! | read-only views of the queue (API, gauges, reconciler); what is ahead of a queued execution | [`reads`] | `queue_ahead.lua` (read-only) |
//! | each dispatcher's admissions of the last minute, for the queue view | [`dispatcher_stats`] | |
//!
//! The services call these functions and make no Redis calls of their own, besides `PING` in health checks
//! and the wake-up subscription. Connections are opened by [`connection`].

pub mod admit;
pub mod connection;
pub mod dead_letter;
pub mod dispatcher_stats;
pub mod enqueue;
pub mod hand_back;
pub mod keys;
pub mod limits;
pub mod message;
pub mod reads;
pub mod release;
pub mod renew;
mod reply;
pub mod retry;
pub mod scripts;
pub mod streams;
pub mod submit_rate;
pub mod takeover;
pub mod withdraw;

pub use admit::{AdmitStop, Admitted, admit};
pub use connection::{RedisSetupError, connect_lazy};
pub use dead_letter::{DeadLetter, NewDeadLetter, dead_letter};
pub use enqueue::{Enqueued, enqueue, enqueue_many};
pub use hand_back::hand_back;
pub use keys::{DISPATCH_GROUP, Keys, STATUS_GROUP};
pub use message::{DEFAULT_PRIORITY, MAX_PRIORITY, QueueBody, QueueError, QueueMessage};
pub use release::release;
pub use renew::{Renewal, deregister, renew};
pub use reply::{field_map, now_ms, parsed_field};
pub use retry::{promote_due, schedule_retry};
pub use takeover::{TakenOver, take_over};
pub use withdraw::{CANCEL_KEY_TTL_SECS, Withdrawn, cancel_many, request_cancel, withdraw};
