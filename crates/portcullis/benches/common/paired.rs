//! Paired, interleaved timing for a noisy shared machine: every round times a batch of
//! each contender back to back, in rotating order, so drift lands on all of them alike;
//! figures are medians of per-round values with their 10th and 90th percentiles.
//!
//! Shared by `crates/portcullis/benches/ratios.rs` and `bench/load`'s `auth-cost`
//! (included there by path).
#![allow(dead_code)] // Each user takes a different part.

use std::time::{Duration, Instant};

/// Rounds per measurement.
pub const ROUNDS: usize = 301;
const BATCH_TIME: Duration = Duration::from_micros(400);

/// One contender's nanoseconds per call, one value per round.
pub struct Series {
    pub name: &'static str,
    pub ns: Vec<f64>,
}

fn calibrate(f: &dyn Fn()) -> usize {
    let start = Instant::now();
    let mut n = 0usize;
    while start.elapsed() < BATCH_TIME {
        f();
        n += 1;
    }
    n.max(1)
}

/// Times every contender in each round, rotating the order, and returns ns per call.
pub fn paired(contenders: &[(&'static str, &dyn Fn())]) -> Vec<Series> {
    paired_rounds(contenders, ROUNDS)
}

/// [`paired`] with a chosen number of rounds.
pub fn paired_rounds(contenders: &[(&'static str, &dyn Fn())], rounds: usize) -> Vec<Series> {
    for (_, f) in contenders {
        for _ in 0..3 {
            calibrate(*f); // warm up
        }
    }
    let batches: Vec<usize> = contenders.iter().map(|(_, f)| calibrate(*f)).collect();
    let mut series: Vec<Series> = contenders
        .iter()
        .map(|(name, _)| Series {
            name,
            ns: Vec::with_capacity(rounds),
        })
        .collect();
    for round in 0..rounds {
        for k in 0..contenders.len() {
            let i = (round + k) % contenders.len();
            let f = contenders[i].1;
            let start = Instant::now();
            for _ in 0..batches[i] {
                f();
            }
            series[i]
                .ns
                .push(start.elapsed().as_nanos() as f64 / batches[i] as f64);
        }
    }
    series
}

pub fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

pub fn median(v: &[f64]) -> f64 {
    percentile(v.to_vec(), 0.5)
}

/// Per-round ratios of `a` to `b`: median (10th–90th percentile).
pub fn ratio(a: &Series, b: &Series) -> String {
    let r: Vec<f64> = a.ns.iter().zip(&b.ns).map(|(x, y)| x / y).collect();
    format!(
        "{:.3} ({:.3}–{:.3})",
        percentile(r.clone(), 0.5),
        percentile(r.clone(), 0.1),
        percentile(r, 0.9)
    )
}

pub fn time(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}
