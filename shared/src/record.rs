//! The PostgreSQL record.
