//! The store replica inside this process.
