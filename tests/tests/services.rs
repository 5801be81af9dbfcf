//! The test service launchers against the real servers: the shared pool isolates tests, dedicated instances
//! survive stop/kill/restart on the same port, and the S3 server checks signatures.

use aws_sdk_s3::primitives::ByteStream;
use flow_like_test_services::{DedicatedPostgres, DedicatedRedis, RedisOptions, S3Settings, TestServices};
use sqlx::{Connection, PgConnection};

async fn current_database(url: &str) -> anyhow::Result<String> {
    let mut connection = PgConnection::connect(url).await?;
    let name: String = sqlx::query_scalar("SELECT current_database()").fetch_one(&mut connection).await?;
    connection.close().await?;
    Ok(name)
}

async fn redis_connection(url: &str) -> anyhow::Result<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(url)?;
    Ok(client.get_multiplexed_async_connection().await?)
}

#[tokio::test]
async fn fresh_databases_are_distinct_and_isolated() -> anyhow::Result<()> {
    let services = TestServices::get().await?;
    let first = services.fresh_database().await?;
    let second = services.fresh_database().await?;
    assert_ne!(first, second);

    let first_name = current_database(&first).await?;
    let second_name = current_database(&second).await?;
    assert_ne!(first_name, second_name);

    // A table made in one database is not visible in the other.
    let mut connection = PgConnection::connect(&first).await?;
    sqlx::raw_sql("CREATE TABLE marker (id int)").execute(&mut connection).await?;
    let mut other = PgConnection::connect(&second).await?;
    let visible: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('marker')::text").fetch_one(&mut other).await?;
    assert_eq!(visible, None);
    Ok(())
}

#[tokio::test]
async fn pool_is_shared_and_prefixes_are_unique() -> anyhow::Result<()> {
    let services = TestServices::get().await?;
    // A second start (as another test process would do) finds the same servers.
    let again = tokio::task::spawn_blocking(TestServices::start_blocking).await??;
    assert_eq!(again.redis_url(), services.redis_url());
    assert_eq!(again.s3_endpoint(), services.s3_endpoint());
    assert_eq!(again.database_url("x"), services.database_url("x"));

    assert_ne!(services.fresh_prefix(), services.fresh_prefix());
    let mut redis = redis_connection(&services.redis_url()).await?;
    let pong: String = redis::cmd("PING").query_async(&mut redis).await?;
    assert_eq!(pong, "PONG");
    // Tests share this Redis at the same time: wiping it is refused (a test that needs to, starts its own).
    for command in ["FLUSHALL", "FLUSHDB"] {
        let refused = redis::cmd(command).query_async::<()>(&mut redis).await.unwrap_err();
        assert_eq!(refused.code(), Some("NOPERM"), "{command}: {refused}");
    }

    let configs = services.fresh_configs().await?;
    assert_eq!(current_database(&configs.database.url).await?.len(), 34);
    assert_eq!(configs.redis.url, services.redis_url());
    assert!(configs.s3.force_path_style);
    assert_eq!(configs.s3.meta_bucket, configs.s3_settings.meta_bucket);
    Ok(())
}

#[tokio::test]
async fn dedicated_redis_stops_and_restarts_on_the_same_port() -> anyhow::Result<()> {
    let mut server = DedicatedRedis::start_with(RedisOptions { append_only: true, ..Default::default() }).await?;
    let url = server.url();
    let mut connection = redis_connection(&url).await?;
    let () = redis::cmd("SET").arg("kept").arg("yes").query_async(&mut connection).await?;

    // A graceful stop flushes the append-only file; the restarted server has the key.
    server.stop().await?;
    assert!(!server.is_running());
    assert!(redis_connection(&url).await.is_err());
    server.restart().await?;
    assert_eq!(server.url(), url);
    let mut connection = redis_connection(&url).await?;
    let kept: Option<String> = redis::cmd("GET").arg("kept").query_async(&mut connection).await?;
    assert_eq!(kept.as_deref(), Some("yes"));

    server.kill().await?;
    assert!(redis_connection(&url).await.is_err());
    server.restart().await?;
    assert!(server.is_running());
    redis_connection(&url).await?;
    Ok(())
}

#[tokio::test]
async fn dedicated_redis_in_memory_loses_data_on_restart() -> anyhow::Result<()> {
    let mut server = DedicatedRedis::start().await?;
    let mut connection = redis_connection(&server.url()).await?;
    let () = redis::cmd("SET").arg("lost").arg("1").query_async(&mut connection).await?;
    server.restart().await?;
    let mut connection = redis_connection(&server.url()).await?;
    let lost: Option<String> = redis::cmd("GET").arg("lost").query_async(&mut connection).await?;
    assert_eq!(lost, None);
    Ok(())
}

#[tokio::test]
async fn dedicated_postgres_keeps_committed_data_across_crash_and_restart() -> anyhow::Result<()> {
    let server = DedicatedPostgres::start().await?;
    let url = server.url();
    let mut connection = PgConnection::connect(&url).await?;
    sqlx::raw_sql("CREATE TABLE kept (id int); INSERT INTO kept VALUES (7)").execute(&mut connection).await?;
    drop(connection);

    server.kill().await?;
    assert!(PgConnection::connect(&url).await.is_err());
    server.restart().await?;
    let mut connection = PgConnection::connect(&url).await?;
    let id: i32 = sqlx::query_scalar("SELECT id FROM kept").fetch_one(&mut connection).await?;
    assert_eq!(id, 7);
    drop(connection);

    server.stop().await?;
    assert!(PgConnection::connect(&url).await.is_err());
    server.restart().await?;
    PgConnection::connect(&server.database_url("postgres")).await?;
    Ok(())
}

#[tokio::test]
async fn buckets_accept_the_right_key_and_reject_a_wrong_secret() -> anyhow::Result<()> {
    let services = TestServices::get().await?;
    let settings = services.fresh_buckets().await?;
    assert_ne!(settings.meta_bucket, settings.content_bucket);

    let client = settings.client();
    for bucket in [&settings.meta_bucket, &settings.content_bucket] {
        client
            .put_object()
            .bucket(bucket)
            .key("a/b.json")
            .body(ByteStream::from_static(b"{\"ok\":true}"))
            .send()
            .await?;
        let object = client.get_object().bucket(bucket).key("a/b.json").send().await?;
        let body = object.body.collect().await?.into_bytes();
        assert_eq!(&body[..], b"{\"ok\":true}");
    }

    let wrong = S3Settings { secret_access_key: "not-the-secret".into(), ..settings.clone() };
    let refused = wrong.client().get_object().bucket(&settings.meta_bucket).key("a/b.json").send().await;
    assert!(refused.is_err(), "a wrong secret must be refused");
    let refused_put = wrong
        .client()
        .put_object()
        .bucket(&settings.content_bucket)
        .key("c")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await;
    assert!(refused_put.is_err(), "a wrong secret must not write");
    Ok(())
}
