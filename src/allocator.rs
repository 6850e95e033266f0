//! The binary's memory allocator: jemalloc, giving freed memory back in the background.
//!
//! With glibc's allocator, memory freed after a wave of connections stayed with the process:
//! after four cycles of 10 000 SSE clients connecting and leaving, the server sat at 315 MB
//! with no client left. glibc's own statistics (`malloc_stats`) put 2 MB of it in use and the
//! rest free inside the allocator (its per-thread arenas, which return free pages only from
//! the top of a heap or on `malloc_trim`): retention, not a leak (docs/benchmarks.md has the
//! measurement).
//!
//! jemalloc returns the pages of freed memory to the system on a decay schedule. Its options
//! are built in through `JEMALLOC_SYS_WITH_MALLOC_CONF` in `.cargo/config.toml`: a background
//! thread purges on schedule (by default jemalloc purges only when the process allocates again,
//! so an idle server would keep the memory), and freed pages are kept for one second rather
//! than ten, so churn still reuses them while an emptied server shrinks within seconds. The
//! fan-out CPU time and idle memory with each choice are in docs/benchmarks.md.

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
