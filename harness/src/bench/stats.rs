//! Medians, spreads and ratios of the samples several rounds produce (pure).

/// Median, minimum and maximum of a set of samples.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Summary {
    /// Median (the mean of the two middle samples for an even count).
    pub median: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
    /// Number of samples.
    pub n: usize,
}

impl Summary {
    /// Summarises `samples`; `None` when there are none (or only NaNs).
    pub fn of(samples: &[f64]) -> Option<Summary> {
        let mut v: Vec<f64> = samples.iter().copied().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Summary {
            median,
            min: v[0],
            max: v[n - 1],
            n,
        })
    }

    /// Spread as a fraction of the median: (max - min) / median (0 when the median is 0).
    pub fn spread(&self) -> f64 {
        if self.median == 0.0 {
            0.0
        } else {
            (self.max - self.min) / self.median.abs()
        }
    }
}

/// `value / base`, or `None` when the base is zero or missing.
pub fn ratio(value: Option<f64>, base: Option<f64>) -> Option<f64> {
    match (value, base) {
        (Some(v), Some(b)) if b != 0.0 && b.is_finite() && v.is_finite() => Some(v / b),
        _ => None,
    }
}

/// `a[i] / b[i]` round by round, summarised: two paths measured back to back in the
/// same round share that round's disturbances (other load on the machine), so these
/// ratios vary less than the ratio of two medians. `None` unless both have the same
/// number of samples (one per round) and some base is nonzero.
pub fn paired_ratios(a: &[f64], b: &[f64]) -> Option<Summary> {
    Summary::of(&paired_ratios_all(a, b)?)
}

/// The per-round ratios `a[i] / b[i]` themselves (rounds whose base is zero are left
/// out); `None` unless both have the same number of samples.
pub fn paired_ratios_all(a: &[f64], b: &[f64]) -> Option<Vec<f64>> {
    if a.len() != b.len() {
        return None;
    }
    Some(
        a.iter()
            .zip(b)
            .filter_map(|(&x, &y)| ratio(Some(x), Some(y)))
            .collect(),
    )
}

/// The best of `candidates` (name, value): the largest when `higher_is_better`, else the
/// smallest. Ties go to the first.
pub fn best<'a>(
    candidates: impl IntoIterator<Item = (&'a str, f64)>,
    higher_is_better: bool,
) -> Option<(&'a str, f64)> {
    candidates
        .into_iter()
        .fold(None, |acc, (name, v)| match acc {
            None => Some((name, v)),
            Some((_, b)) if (higher_is_better && v > b) || (!higher_is_better && v < b) => {
                Some((name, v))
            }
            keep => keep,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        let s = Summary::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        let s = Summary::of(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!(s.median, 2.5);
        assert_eq!(Summary::of(&[7.0]).unwrap().median, 7.0);
    }

    #[test]
    fn empty_or_nan_samples_have_no_summary() {
        assert_eq!(Summary::of(&[]), None);
        assert_eq!(Summary::of(&[f64::NAN]), None);
        assert_eq!(Summary::of(&[f64::NAN, 5.0]).unwrap().median, 5.0);
    }

    #[test]
    fn spread_is_relative_to_the_median() {
        let s = Summary::of(&[9.0, 10.0, 11.0]).unwrap();
        assert!((s.spread() - 0.2).abs() < 1e-12);
        assert_eq!(Summary::of(&[0.0, 0.0]).unwrap().spread(), 0.0);
    }

    #[test]
    fn ratios_need_a_nonzero_base() {
        assert_eq!(ratio(Some(5.0), Some(10.0)), Some(0.5));
        assert_eq!(ratio(Some(5.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(1.0)), None);
        assert_eq!(ratio(Some(1.0), None), None);
    }

    #[test]
    fn paired_ratios_go_round_by_round() {
        // A slow second round slows both paths: per round the ratio stays 0.5.
        let s = paired_ratios(&[5.0, 2.0, 6.0], &[10.0, 4.0, 12.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (0.5, 0.5, 0.5, 3));
        assert_eq!(
            paired_ratios(&[1.0, 2.0], &[1.0]),
            None,
            "rounds do not match"
        );
        assert_eq!(paired_ratios(&[1.0], &[0.0]), None, "no usable base");
    }

    #[test]
    fn best_depends_on_direction() {
        let c = [("a", 3.0), ("b", 5.0), ("c", 1.0)];
        assert_eq!(best(c, true), Some(("b", 5.0)));
        assert_eq!(best(c, false), Some(("c", 1.0)));
        assert_eq!(best([], true), None);
        assert_eq!(best([("x", 2.0), ("y", 2.0)], true), Some(("x", 2.0)));
    }
}
