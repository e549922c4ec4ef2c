//! The decision cost of each local limiter, through its keyed table: one hot key, and 10 000
//! keys in turn. Run: `cargo bench -p api-gateway --bench limiters`.

use std::hint::black_box;
use std::time::Duration;

use api_gateway::ratelimit::{AlgorithmKind, Policy, PolicyConfig};
use criterion::{Criterion, criterion_group, criterion_main};

const ALGORITHMS: [(&str, AlgorithmKind); 5] = [
    ("token_bucket", AlgorithmKind::TokenBucket),
    ("gcra", AlgorithmKind::Gcra),
    ("fixed_window", AlgorithmKind::FixedWindow),
    ("sliding_log", AlgorithmKind::SlidingLog),
    ("sliding_window", AlgorithmKind::SlidingWindow),
];

fn limiters(c: &mut Criterion) {
    let keys: Vec<String> = (0..10_000)
        .map(|i| format!("ip:10.0.{}.{}", i / 256, i % 256))
        .collect();
    let mut group = c.benchmark_group("decision");
    for (name, algorithm) in ALGORITHMS {
        // A quota that the run exhausts quickly, so both outcomes are measured, and a
        // clock that moves 1 µs per decision, so refills and window rolls happen.
        let config = PolicyConfig {
            algorithm,
            limit: 1000,
            window_ms: 1000,
            ..PolicyConfig::default()
        };
        let policy = Policy::new(name, &config, None).expect("a valid policy");
        let mut now: u64 = 1_800_000_000_000_000_000;
        group.bench_function(format!("{name}/hot_key"), |b| {
            b.iter(|| {
                now += 1_000;
                black_box(policy.check_local(black_box("ip:10.0.0.1"), now))
            })
        });
        let mut i = 0;
        group.bench_function(format!("{name}/10k_keys"), |b| {
            b.iter(|| {
                now += 1_000;
                i = (i + 1) % keys.len();
                black_box(policy.check_local(black_box(&keys[i]), now))
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = limiters
}
criterion_main!(benches);
