//! `cargo bench --bench render`: parse + validate + render of a spec with 1,000 workers
//! (PKI already in the state dir, as on every run after the first). Target: under 1 s.

use paasgen::pki::Pki;
use paasgen::render::{self, RenderOptions};
use paasgen::spec;
use std::time::{Duration, Instant};

fn main() {
    let workers = 1000;
    let text = spec::example_with_workers(workers);
    let state = tempfile::tempdir().expect("temp dir");
    let first = spec::parse("bench.yaml", &text).expect("valid spec").0;
    let lock = paasgen::lock::StateLock::acquire(state.path(), "bench", false).expect("lock");
    Pki::ensure(state.path(), &first)
        .and_then(|p| p.save(&lock))
        .expect("PKI");

    let mut runs: Vec<Duration> = (0..5)
        .map(|_| {
            let start = Instant::now();
            let spec = spec::parse("bench.yaml", &text).expect("valid spec").0;
            let pki = Pki::ensure(state.path(), &spec).expect("PKI");
            let docs = render::render(&spec, &pki, &RenderOptions::default()).expect("render");
            assert_eq!(docs.len(), workers + 8);
            start.elapsed()
        })
        .collect();
    runs.sort();
    println!(
        "render {} nodes ({workers} workers): min {:.1} ms, median {:.1} ms, max {:.1} ms over {} runs (target < 1000 ms)",
        workers + 8,
        runs[0].as_secs_f64() * 1e3,
        runs[runs.len() / 2].as_secs_f64() * 1e3,
        runs[runs.len() - 1].as_secs_f64() * 1e3,
        runs.len()
    );
}
