//! A closed-loop load generator: a fixed number of workers each run one unit of work (one
//! request, or one whole checkout flow) after another, as fast as the server answers. Only
//! units that end inside the measurement window count, so warm-up (connection set-up, JIT-free
//! but cache-cold servers) and the ragged end are left out.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

// tokio's clock, so that tests can run the window on paused time.
use tokio::time::Instant;

/// When to measure.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Load before counting starts.
    pub warm_up: Duration,
    /// How long units are counted.
    pub measure: Duration,
}

/// What a run measured.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Units that succeeded inside the window.
    pub ok: u64,
    /// Units that failed inside the window.
    pub failed: u64,
    /// Length of the window in seconds.
    pub seconds: f64,
    /// Latency of every successful unit inside the window, in microseconds, sorted.
    latencies_us: Vec<u32>,
    /// The first failure, to show what went wrong.
    pub first_error: Option<String>,
}

impl Outcome {
    /// Successful units per second.
    pub fn per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.ok as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// The latency below which `fraction` (0–1) of successful units finished.
    pub fn percentile(&self, fraction: f64) -> Duration {
        let Some(last) = self.latencies_us.len().checked_sub(1) else {
            return Duration::ZERO;
        };
        let rank = (fraction.clamp(0.0, 1.0) * last as f64).round();
        // `rank` lies in 0..=last, so the conversion cannot truncate.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let index = rank as usize;
        Duration::from_micros(u64::from(self.latencies_us[index.min(last)]))
    }

    /// Median latency.
    pub fn p50(&self) -> Duration {
        self.percentile(0.50)
    }

    /// 99th-percentile latency.
    pub fn p99(&self) -> Duration {
        self.percentile(0.99)
    }

    /// Adds `other`'s window, units and latencies to this one.
    fn absorb(&mut self, other: Outcome) {
        self.ok += other.ok;
        self.failed += other.failed;
        self.seconds += other.seconds;
        self.latencies_us.extend(other.latencies_us);
        self.latencies_us.sort_unstable();
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// Runs `workers` loops of `unit(worker)` for the warm-up plus the window and reports the
/// window. A unit returns `Err(reason)` when the answer was not the expected one.
pub async fn drive<F, Fut>(workers: usize, window: Window, unit: F) -> Outcome
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let unit = Arc::new(unit);
    let start = Instant::now();
    let counted_from = start + window.warm_up;
    let end = counted_from + window.measure;
    let mut tasks = Vec::with_capacity(workers);
    for worker in 0..workers {
        let unit = unit.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Outcome::default();
            loop {
                let begun = Instant::now();
                if begun >= end {
                    break;
                }
                let result = unit(worker).await;
                let done = Instant::now();
                if done < counted_from || done >= end {
                    continue;
                }
                match result {
                    Ok(()) => {
                        mine.ok += 1;
                        let micros = u32::try_from((done - begun).as_micros()).unwrap_or(u32::MAX);
                        mine.latencies_us.push(micros);
                    }
                    Err(reason) => {
                        mine.failed += 1;
                        mine.first_error.get_or_insert(reason);
                    }
                }
            }
            mine
        }));
    }
    let mut total = Outcome {
        seconds: window.measure.as_secs_f64(),
        ..Outcome::default()
    };
    for task in tasks {
        match task.await {
            Ok(part) => total.absorb(part),
            Err(error) => {
                total.failed += 1;
                total
                    .first_error
                    .get_or_insert_with(|| format!("load worker died: {error}"));
            }
        }
    }
    total
}

/// Which side of an interleaved measure a slice belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The first load.
    A,
    /// The second load.
    B,
}

/// Measures two loads in alternating slices that add up to `window` each, so that a change
/// in the machine's speed during the run (shared hosts drift by tens of percent over a
/// minute) weighs on both sides of a ratio alike. The order turns every pair (a, b, b, a,
/// a, b, …): a steady speed-up or slow-down then favours neither side, where a, b, a, b
/// always measured b after a. `boundary` is called
/// before each slice with its side and once after the last with `None`, so that a caller
/// can attribute what it samples (CPU time) to each side.
pub async fn interleave<A, AFut, B, BFut>(
    workers: usize,
    window: Window,
    slices: u32,
    a: A,
    b: B,
    mut boundary: impl FnMut(Option<Side>),
) -> (Outcome, Outcome)
where
    A: Fn(usize) -> AFut + Clone + Send + Sync + 'static,
    AFut: Future<Output = Result<(), String>> + Send + 'static,
    B: Fn(usize) -> BFut + Clone + Send + Sync + 'static,
    BFut: Future<Output = Result<(), String>> + Send + 'static,
{
    let slices = slices.max(1);
    let slice = Window {
        warm_up: window.warm_up / slices,
        measure: window.measure / slices,
    };
    let (mut first, mut second) = (Outcome::default(), Outcome::default());
    for pair in 0..slices {
        let order = if pair % 2 == 0 {
            [Side::A, Side::B]
        } else {
            [Side::B, Side::A]
        };
        for side in order {
            boundary(Some(side));
            match side {
                Side::A => first.absorb(drive(workers, slice, a.clone()).await),
                Side::B => second.absorb(drive(workers, slice, b.clone()).await),
            }
        }
    }
    boundary(None);
    (first, second)
}

/// Runs `unit` `count` times in all, from `workers` concurrent workers, adding each one that
/// succeeds to `done` (so a caller can watch progress). The first failure stops its worker
/// and is returned once every worker stopped.
pub async fn run_count<F, Fut>(
    workers: usize,
    count: usize,
    done: Arc<AtomicUsize>,
    unit: F,
) -> Result<(), String>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let unit = Arc::new(unit);
    let left = Arc::new(AtomicUsize::new(count));
    let mut tasks = Vec::with_capacity(workers);
    for worker in 0..workers {
        let (unit, left, done) = (unit.clone(), left.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            while left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
            {
                unit(worker).await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<(), String>(())
        }));
    }
    let mut first_error = None;
    for task in tasks {
        let outcome = task
            .await
            .map_err(|e| format!("worker died: {e}"))
            .and_then(|r| r);
        if let Err(error) = outcome {
            first_error.get_or_insert(error);
        }
    }
    first_error.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_sorted_latencies() {
        let outcome = Outcome {
            ok: 100,
            seconds: 2.0,
            latencies_us: (1..=100).collect(),
            ..Outcome::default()
        };
        assert_eq!(outcome.per_second(), 50.0);
        assert_eq!(outcome.p50(), Duration::from_micros(51));
        assert_eq!(outcome.p99(), Duration::from_micros(99));
        assert_eq!(Outcome::default().p99(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn interleaved_loads_each_get_the_whole_window() {
        let window = Window {
            warm_up: Duration::from_millis(50),
            measure: Duration::from_millis(200),
        };
        let fast = |_| async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok(())
        };
        let slow = |_| async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(())
        };
        let mut seen = Vec::new();
        let (a, b) = interleave(1, window, 4, fast, slow, |side| seen.push(side)).await;
        let mut expected = [Some(Side::A), Some(Side::B), Some(Side::B), Some(Side::A)].repeat(2);
        expected.push(None);
        assert_eq!(
            seen, expected,
            "every slice is announced, pairs turned, then the end"
        );
        assert!((a.seconds - 0.2).abs() < 1e-9 && (b.seconds - 0.2).abs() < 1e-9);
        // 4 slices of 50 ms counted: 5 fast units or 2–3 slow ones end in each.
        assert_eq!(a.ok, 20, "{a:?}");
        assert!((8..=12).contains(&b.ok), "{b:?}");
        assert_eq!(a.p99(), Duration::from_millis(10));
        assert_eq!(b.p50(), Duration::from_millis(20));
    }

    #[tokio::test(start_paused = true)]
    async fn only_units_inside_the_window_count() {
        let window = Window {
            warm_up: Duration::from_millis(100),
            measure: Duration::from_millis(200),
        };
        let outcome = drive(2, window, |worker| async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if worker == 0 {
                Ok(())
            } else {
                Err("worker 1 always fails".to_owned())
            }
        })
        .await;
        // On paused time units end every 10 ms: the 9 that end in the warm-up are left out,
        // the 20 ending at 100..=290 ms count.
        assert_eq!(outcome.ok, 20, "{outcome:?}");
        assert_eq!(outcome.failed, 20, "{outcome:?}");
        assert_eq!(outcome.p50(), Duration::from_millis(10));
        assert_eq!(
            outcome.first_error.as_deref(),
            Some("worker 1 always fails")
        );
    }
}
