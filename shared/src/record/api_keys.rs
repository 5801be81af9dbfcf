//! API keys: `flk_<prefix>_<secret>`. The prefix (48 random bits, hex) is stored in clear and used to look the
//! key up; the secret (256 random bits, base64url) is stored only as its SHA-256 and compared in constant time.
//! A fast hash is right here: the secret is random and long, so there is nothing to brute-force.

use super::RecordError;
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use subtle::ConstantTimeEq;
use uuid::Uuid;

const KEY_TAG: &str = "flk";

/// A key just issued: `key` is shown to the caller once and never stored.
#[derive(Debug, Clone)]
pub struct IssuedApiKey {
    pub id: Uuid,
    pub key: String,
}

/// A stored key, as the authenticator needs it.
#[derive(Debug, Clone)]
pub struct ApiKeyRecord {
    pub id: Uuid,
    pub tenant: String,
    pub is_admin: bool,
    secret_sha256: Vec<u8>,
}

impl ApiKeyRecord {
    /// Constant-time comparison of a presented secret with the stored hash.
    pub fn matches(&self, secret: &str) -> bool {
        hash_secret(secret).as_slice().ct_eq(&self.secret_sha256).into()
    }
}

pub fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Splits a presented key into (prefix, secret); `None` when it is not shaped like one of ours.
pub fn parse_api_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(KEY_TAG)?.strip_prefix('_')?;
    let (prefix, secret) = rest.split_once('_')?;
    (prefix.len() == 12 && prefix.bytes().all(|b| b.is_ascii_hexdigit()) && !secret.is_empty())
        .then_some((prefix, secret))
}

fn random_key() -> (String, String) {
    use base64::Engine as _;
    let mut rng = rand::rng();
    let mut prefix = [0u8; 6];
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut prefix);
    rng.fill_bytes(&mut secret);
    let prefix: String = prefix.iter().map(|b| format!("{b:02x}")).collect();
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    (prefix, secret)
}

/// Issues a new key for a tenant (creating the tenant if needed).
pub async fn issue(pool: &PgPool, tenant: &str, is_admin: bool) -> Result<IssuedApiKey, RecordError> {
    super::ensure_tenant(pool, tenant).await?;
    let id = Uuid::now_v7();
    let (prefix, secret) = random_key();
    sqlx::query("INSERT INTO api_keys (id, tenant, prefix, secret_sha256, is_admin) VALUES ($1, $2, $3, $4, $5)")
        .bind(id)
        .bind(tenant)
        .bind(&prefix)
        .bind(hash_secret(&secret).as_slice())
        .bind(is_admin)
        .execute(pool)
        .await?;
    Ok(IssuedApiKey { id, key: format!("{KEY_TAG}_{prefix}_{secret}") })
}

/// Looks up a live (not revoked) key by its prefix.
pub async fn find_live(pool: &PgPool, prefix: &str) -> Result<Option<ApiKeyRecord>, RecordError> {
    let row: Option<(Uuid, String, bool, Vec<u8>)> = sqlx::query_as(
        "SELECT id, tenant, is_admin, secret_sha256 FROM api_keys WHERE prefix = $1 AND revoked_at IS NULL",
    )
    .bind(prefix)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(id, tenant, is_admin, secret_sha256)| ApiKeyRecord { id, tenant, is_admin, secret_sha256 }))
}

/// Revokes a key; false when no live key has that id.
pub async fn revoke(pool: &PgPool, id: Uuid) -> Result<bool, RecordError> {
    let done = sqlx::query("UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_keys_parse_and_match() {
        let (prefix, secret) = random_key();
        let key = format!("{KEY_TAG}_{prefix}_{secret}");
        let (p, s) = parse_api_key(&key).unwrap();
        assert_eq!((p, s), (prefix.as_str(), secret.as_str()));
        let record = ApiKeyRecord {
            id: Uuid::nil(),
            tenant: "t".into(),
            is_admin: false,
            secret_sha256: hash_secret(&secret).to_vec(),
        };
        assert!(record.matches(&secret));
        assert!(!record.matches("wrong"));
        // 256 random bits in the secret.
        assert!(secret.len() >= 43);
    }

    #[test]
    fn malformed_keys_are_refused() {
        for key in ["", "flk_", "flk_abc_def", "xyz_0123456789ab_s", "flk_0123456789ab_", "flk_0123456789zz_s"] {
            assert!(parse_api_key(key).is_none(), "{key}");
        }
    }
}
