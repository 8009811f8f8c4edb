//! Timing shared by the crates' benches (included by path, `mod turns;`).
//!
//! These machines are shared, and their speed drifts within seconds. What a bench compares
//! therefore takes turns, a pass over the corpus at a time, so that a drift falls on every
//! line alike and their ratios hold; and each is timed per second of wall time and per
//! second of this thread's CPU time (from /proc/thread-self/schedstat), which leaves out time
//! spent waiting for a core that other processes hold.

use std::hint::black_box;
use std::time::{Duration, Instant};

/// Items per second of each of `works` over indices `0..n`, per second of wall time and of
/// this thread's CPU time: after a warm-up pass of each, they take turns a pass at a time
/// until each has run for `budget`.
pub fn alternating<const N: usize>(
    n: usize,
    budget: Duration,
    mut works: [&mut dyn FnMut(usize) -> usize; N],
) -> [(f64, f64); N] {
    for work in works.iter_mut() {
        for i in 0..n {
            black_box(work(i));
        }
    }
    let mut wall = [Duration::ZERO; N];
    let mut cpu = [0u64; N];
    let mut passes = 0usize;
    while wall.iter().sum::<Duration>() < budget * N as u32 {
        for (k, work) in works.iter_mut().enumerate() {
            let (started, cpu_started) = (Instant::now(), thread_cpu_nanos());
            for i in 0..n {
                black_box(work(i));
            }
            cpu[k] += thread_cpu_nanos() - cpu_started;
            wall[k] += started.elapsed();
        }
        passes += 1;
    }
    std::array::from_fn(|k| {
        let done = (passes * n) as f64;
        (done / wall[k].as_secs_f64(), done / (cpu[k] as f64 / 1e9))
    })
}

/// Nanoseconds this thread has run on a CPU (the first field of schedstat).
pub fn thread_cpu_nanos() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|stat| stat.split_whitespace().next()?.parse().ok())
        .expect("/proc/thread-self/schedstat (Linux)")
}
