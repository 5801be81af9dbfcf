//! S3 storage.
