//! The workflow document (DESIGN.md) and its validation.
