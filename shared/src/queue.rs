//! The Redis queue protocol.
