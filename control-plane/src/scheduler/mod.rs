//! The scheduler: places pods on nodes (framework, plugins, queue, cache).
