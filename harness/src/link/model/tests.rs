//! The link model's tests: delay, jitter, loss, the rate-limited queue, reorder and
//! duplicates, each seeded.

use super::*;
use crate::link::spec::parse_netem;

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn departures(
    dir: &mut Direction,
    frames: usize,
    gap: Duration,
    len: usize,
) -> Vec<Option<Duration>> {
    (0..frames)
        .map(|i| match dir.admit(gap * i as u32, len) {
            Fate::Sent(c) => Some(c[0].at - gap * i as u32),
            Fate::Dropped(_) => None,
        })
        .collect()
}

fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

#[test]
fn a_plain_delay_is_exact_and_keeps_order() {
    let mut d = Direction::new(parse_netem("delay 20ms").unwrap(), 1);
    for i in 0..100u32 {
        assert_eq!(
            d.admit(ms(i as u64), 1500),
            Fate::Sent(vec![Departure {
                at: ms(i as u64 + 20),
                corrupt: false
            }])
        );
    }
}

#[test]
fn jitter_spreads_around_the_delay_in_every_distribution() {
    for dist in ["uniform", "normal", "pareto", "paretonormal"] {
        let spec = parse_netem(&format!("delay 20ms 5ms distribution {dist}")).unwrap();
        let mut d = Direction::new(spec, 7);
        // Frames far apart, so FIFO order never holds one back.
        let delays: Vec<Duration> = departures(&mut d, 20_000, ms(100), 100)
            .into_iter()
            .flatten()
            .collect();
        let mean = delays.iter().map(|d| d.as_secs_f64()).sum::<f64>() / delays.len() as f64;
        assert!((mean - 0.020).abs() < 0.0005, "{dist}: mean {mean}");
        let p50 = percentile(delays.clone(), 0.5).as_secs_f64();
        let spread =
            percentile(delays.clone(), 0.9).as_secs_f64() - percentile(delays, 0.1).as_secs_f64();
        assert!(spread > 0.004 && spread < 0.02, "{dist}: p10..p90 {spread}");
        if dist == "pareto" {
            assert!(
                p50 < mean,
                "pareto's median sits below its mean: {p50} vs {mean}"
            );
        }
    }
}

#[test]
fn correlated_jitter_changes_slowly() {
    let step = |corr: &str| {
        let mut d = Direction::new(parse_netem(&format!("delay 20ms 5ms {corr}")).unwrap(), 3);
        let v: Vec<f64> = departures(&mut d, 5000, ms(100), 100)
            .into_iter()
            .flatten()
            .map(|d| d.as_secs_f64())
            .collect();
        v.windows(2).map(|w| (w[1] - w[0]).abs()).sum::<f64>() / v.len() as f64
    };
    assert!(step("90%") < step("0%") / 3.0);
}

#[test]
fn random_loss_is_within_the_binomial_interval() {
    let mut d = Direction::new(parse_netem("loss 5%").unwrap(), 11);
    let n = 100_000;
    let lost = departures(&mut d, n, ms(1), 100)
        .iter()
        .filter(|x| x.is_none())
        .count() as f64;
    // 99% interval of a binomial(100000, 0.05): ± 2.576 · sqrt(n p (1-p)) ≈ ± 178.
    assert!((lost - 5000.0).abs() < 178.0, "lost {lost}");
}

#[test]
fn gilbert_elliott_loses_in_bursts_of_the_expected_length() {
    // p = 1%, r = 20%: bad bursts of mean 5 frames, all lost; stationary loss
    // p / (p + r) = 4.76%.
    let mut d = Direction::new(parse_netem("loss gemodel 1% 20% 100% 0%").unwrap(), 5);
    let fates = departures(&mut d, 200_000, ms(1), 100);
    let lost = fates.iter().filter(|x| x.is_none()).count() as f64 / fates.len() as f64;
    assert!((lost - 0.0476).abs() < 0.005, "loss {lost}");
    let mut bursts = Vec::new();
    let mut run = 0;
    for f in &fates {
        if f.is_none() {
            run += 1;
        } else if run > 0 {
            bursts.push(run);
            run = 0;
        }
    }
    let mean = bursts.iter().sum::<usize>() as f64 / bursts.len() as f64;
    assert!((mean - 5.0).abs() < 0.4, "mean burst {mean}");
}

#[test]
fn clocked_bursts_lose_during_bad_periods() {
    let spec = Impairment {
        loss: Loss::Bursts {
            good: ms(900),
            bad: ms(100),
            good_loss: 0.0,
            bad_loss: 1.0,
        },
        ..Impairment::default()
    };
    let mut d = Direction::new(spec, 9);
    let fates = departures(&mut d, 600_000, Duration::from_micros(500), 100);
    let lost = fates.iter().filter(|x| x.is_none()).count() as f64 / fates.len() as f64;
    assert!((lost - 0.10).abs() < 0.03, "loss {lost}");
    let runs: Vec<usize> = fates
        .split(|f| f.is_some())
        .map(|r| r.len())
        .filter(|&l| l > 0)
        .collect();
    let mean_ms = runs.iter().sum::<usize>() as f64 / runs.len() as f64 * 0.5;
    assert!(
        (mean_ms - 100.0).abs() < 30.0,
        "mean bad period {mean_ms} ms"
    );
}

#[test]
fn a_rate_limit_paces_frames_and_its_full_queue_drops_at_the_tail() {
    // 1 Mbit/s: a 1250-byte frame takes 10 ms. 50 frames at once, queue of 20.
    let mut d = Direction::new(parse_netem("rate 1mbit limit 20").unwrap(), 1);
    let fates: Vec<Fate> = (0..50).map(|_| d.admit(Duration::ZERO, 1250)).collect();
    let sent: Vec<Duration> = fates
        .iter()
        .filter_map(|f| match f {
            Fate::Sent(c) => Some(c[0].at),
            _ => None,
        })
        .collect();
    assert_eq!(sent.len(), 20);
    assert_eq!(sent[0], ms(10));
    assert_eq!(sent[19], ms(200), "delay grows with the queue");
    assert_eq!(fates[20], Fate::Dropped(DropCause::QueueFull));
    // Once drained, the queue takes frames again.
    assert!(matches!(d.admit(ms(200), 1250), Fate::Sent(_)));
}

#[test]
fn queue_bounds_in_bytes_and_time() {
    let spec = |q| Impairment {
        rate_bps: Some(1_000_000),
        limit: q,
        ..Impairment::default()
    };
    let mut bytes = Direction::new(spec(QueueLimit::Bytes(5000)), 1);
    let n = (0..10)
        .filter(|_| matches!(bytes.admit(Duration::ZERO, 1250), Fate::Sent(_)))
        .count();
    assert_eq!(n, 4);
    let mut time = Direction::new(spec(QueueLimit::Time(ms(45))), 1);
    let n = (0..10)
        .filter(|_| matches!(time.admit(Duration::ZERO, 1250), Fate::Sent(_)))
        .count();
    assert_eq!(n, 5, "starts at 0, 10, 20, 30, 40 ms wait at most 45 ms");
}

#[test]
fn reorder_lets_frames_skip_the_delay_and_duplicate_sends_twice() {
    let mut d = Direction::new(
        parse_netem("delay 10ms reorder 30% duplicate 10% corrupt 5%").unwrap(),
        2,
    );
    let (mut early, mut dup, mut bad, n) = (0, 0, 0, 10_000);
    for i in 0..n {
        if let Fate::Sent(c) = d.admit(ms(i), 100) {
            early += usize::from(c[0].at == ms(i));
            dup += usize::from(c.len() == 2);
            bad += c.iter().filter(|c| c.corrupt).count();
        }
    }
    assert!((2700..3300).contains(&early), "{early}");
    assert!((800..1200).contains(&dup), "{dup}");
    assert!((400..700).contains(&bad), "{bad}");
}

#[test]
fn the_same_seed_gives_the_same_pattern() {
    let spec = parse_netem("delay 5ms 2ms loss 10% duplicate 5%").unwrap();
    let run = |seed| {
        let mut d = Direction::new(spec, seed);
        (0..1000).map(|i| d.admit(ms(i), 100)).collect::<Vec<_>>()
    };
    assert_eq!(run(42), run(42));
    assert_ne!(run(42), run(43));
}
