//! Portal integration tests.
