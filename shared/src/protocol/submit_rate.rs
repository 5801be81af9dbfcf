//! Submit rate limits: one atomic charge per submission against its tenant's token bucket (`submit_rate.lua`),
//! shared by every API replica through Redis. The rate and burst come from the
//! tenant's overrides in the `limits` hash (written by the admin API, restored from PostgreSQL by the
//! reconciler) or else from the API's defaults.

use super::keys::Keys;
use super::message::QueueError;
use super::scripts::SUBMIT_RATE;
use redis::aio::ConnectionManager;
use std::time::Duration;

/// The API's default limit for tenants without an override.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateDefaults {
    /// Submissions per second; 0 means no limit.
    pub rate: f64,
    /// Submissions accepted at once from a full bucket; 0 means the rate rounded up (at least 1).
    pub burst: u32,
}

/// The bucket after a charge, for the `RateLimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    /// Its size: the burst.
    pub burst: u32,
    /// Tokens left after this submission.
    pub remaining: u32,
    /// Until the bucket is full again.
    pub full_in: Duration,
}

/// The outcome of a charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    /// The tenant has no rate limit.
    Unlimited,
    /// A token was taken.
    Allowed(Bucket),
    /// No token: nothing was written; one is available after `retry_in`.
    Refused { bucket: Bucket, retry_in: Duration },
}

/// Takes one token from `tenant`'s bucket, or refuses without writing anything.
pub async fn charge(
    conn: &mut ConnectionManager,
    keys: &Keys,
    tenant: &str,
    defaults: RateDefaults,
) -> Result<Charge, QueueError> {
    let (allowed, burst, remaining, retry_us, full_us): (i64, i64, i64, i64, i64) = SUBMIT_RATE
        .script()
        .key(keys.limits())
        .key(keys.submit_rate(tenant))
        .arg(tenant)
        .arg(defaults.rate)
        .arg(defaults.burst)
        .invoke_async(conn)
        .await?;
    if burst <= 0 {
        return Ok(Charge::Unlimited);
    }
    let micros = |us: i64| Duration::from_micros(u64::try_from(us).unwrap_or(0));
    let bucket = Bucket {
        burst: u32::try_from(burst).unwrap_or(u32::MAX),
        remaining: u32::try_from(remaining).unwrap_or(0),
        full_in: micros(full_us),
    };
    Ok(if allowed == 1 { Charge::Allowed(bucket) } else { Charge::Refused { bucket, retry_in: micros(retry_us) } })
}
