//! The script registry: every Lua script of the protocol, each compiled once with the shared prelude
//! (`prelude.lua`: the key builders and the steps several scripts share) in front of it.
//!
//! Calls go through `EVALSHA` and fall back to loading the script when Redis does not know it (after a restart
//! or `SCRIPT FLUSH`); [`load_all`] loads every script up front, which also proves that each one compiles.

use super::message::QueueError;
use redis::aio::ConnectionManager;
use std::sync::OnceLock;

/// The Lua that precedes every script.
pub const PRELUDE: &str = include_str!("prelude.lua");

/// One script: its name (the operation) and its source without the prelude.
pub struct LuaScript {
    pub name: &'static str,
    pub body: &'static str,
    compiled: OnceLock<redis::Script>,
}

impl LuaScript {
    const fn new(name: &'static str, body: &'static str) -> Self {
        Self { name, body, compiled: OnceLock::new() }
    }

    /// The script as Redis runs it: the prelude, then the body.
    pub fn source(&self) -> String {
        format!("{PRELUDE}\n{}", self.body)
    }

    pub fn script(&self) -> &redis::Script {
        self.compiled.get_or_init(|| redis::Script::new(&self.source()))
    }
}

pub static ENQUEUE: LuaScript = LuaScript::new("enqueue", include_str!("enqueue.lua"));
pub static ADMIT: LuaScript = LuaScript::new("admit", include_str!("admit.lua"));
pub static RENEW: LuaScript = LuaScript::new("renew", include_str!("renew.lua"));
pub static TAKEOVER: LuaScript = LuaScript::new("takeover", include_str!("takeover.lua"));
pub static RELEASE: LuaScript = LuaScript::new("release", include_str!("release.lua"));
pub static RETRY: LuaScript = LuaScript::new("retry", include_str!("retry.lua"));
pub static WITHDRAW: LuaScript = LuaScript::new("withdraw", include_str!("withdraw.lua"));
pub static DEAD_LETTER: LuaScript = LuaScript::new("dead_letter", include_str!("dead_letter.lua"));
pub static HAND_BACK: LuaScript = LuaScript::new("hand_back", include_str!("hand_back.lua"));
pub static ACK_STATUS: LuaScript = LuaScript::new("ack_status", include_str!("ack_status.lua"));
pub static SUBMIT_RATE: LuaScript = LuaScript::new("submit_rate", include_str!("submit_rate.lua"));
pub static QUEUE_AHEAD: LuaScript = LuaScript::new("queue_ahead", include_str!("queue_ahead.lua"));

/// Every script, in the order of the protocol's life cycle.
pub static ALL: [&LuaScript; 12] = [
    &SUBMIT_RATE,
    &ENQUEUE,
    &ADMIT,
    &RENEW,
    &TAKEOVER,
    &RELEASE,
    &RETRY,
    &WITHDRAW,
    &DEAD_LETTER,
    &HAND_BACK,
    &ACK_STATUS,
    &QUEUE_AHEAD,
];

/// Loads every script into Redis (`SCRIPT LOAD`); an error names the script that does not compile.
pub async fn load_all(conn: &mut ConnectionManager) -> Result<(), QueueError> {
    for script in ALL {
        script.script().load_async(conn).await.map_err(|err| match err.kind() {
            redis::ErrorKind::Server(_) => QueueError::Malformed(format!("script {}: {err}", script.name)),
            _ => QueueError::from(err),
        })?;
    }
    Ok(())
}
