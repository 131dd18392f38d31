//! Selection over usable backends, as pure functions of their state.
//!
//! Both functions scan the backends in configuration order, starting just after the one
//! chosen last (`last`), so the order is deterministic:
//! - [`round_robin`]: the next usable backend after the last one chosen.
//! - [`least_connections`]: the usable backend with the fewest live sessions per unit of
//!   weight (`live / weight`, compared exactly); ties go to the first tied backend after
//!   the last one chosen. With equal weights, six clients that stay connected to three
//!   backends land on 1, 2, 3, 1, 2, 3 (2/2/2), and a freed slot is the next one filled.

/// What least-connections selection needs to know about one backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    /// Whether the backend may take new sessions (healthy and not excluded).
    pub usable: bool,
    /// Live sessions on it now.
    pub live: u64,
    /// Relative capacity; zero is treated as one.
    pub weight: u32,
}

/// Indices `0..n` in rotation order, starting after `last` (or at 0).
fn rotation(n: usize, last: Option<usize>) -> impl Iterator<Item = usize> {
    let start = last.map_or(0, |l| (l + 1) % n.max(1));
    (0..n).map(move |k| (start + k) % n)
}

/// The next usable backend after `last`, in configuration order; `None` if none is usable.
pub fn round_robin(usable: &[bool], last: Option<usize>) -> Option<usize> {
    rotation(usable.len(), last).find(|&i| usable[i])
}

/// The usable backend with the lowest `live / weight`; ties go round robin after `last`.
pub fn least_connections(loads: &[Load], last: Option<usize>) -> Option<usize> {
    let mut best: Option<usize> = None;
    for i in rotation(loads.len(), last) {
        let candidate = loads[i];
        if !candidate.usable {
            continue;
        }
        let better = match best {
            None => true,
            // a.live / a.weight < b.live / b.weight, without division.
            Some(b) => {
                let current = loads[b];
                u128::from(candidate.live) * u128::from(current.weight.max(1))
                    < u128::from(current.live) * u128::from(candidate.weight.max(1))
            }
        };
        if better {
            best = Some(i);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loads(lives: &[u64]) -> Vec<Load> {
        lives
            .iter()
            .map(|&live| Load {
                usable: true,
                live,
                weight: 1,
            })
            .collect()
    }

    /// Simulates clients that stay connected: each choice adds a live session.
    fn assign(loads: &mut [Load], clients: usize) -> Vec<usize> {
        let mut last = None;
        let mut order = Vec::new();
        for _ in 0..clients {
            let i = least_connections(loads, last).expect("a usable backend");
            loads[i].live += 1;
            last = Some(i);
            order.push(i);
        }
        order
    }

    #[test]
    fn round_robin_cycles_in_configuration_order() {
        let usable = [true, true, true];
        let mut last = None;
        let mut seen = Vec::new();
        for _ in 0..6 {
            last = round_robin(&usable, last);
            seen.push(last.unwrap());
        }
        assert_eq!(seen, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn round_robin_skips_unusable_and_handles_none() {
        assert_eq!(round_robin(&[true, false, true], Some(0)), Some(2));
        assert_eq!(round_robin(&[true, false, true], Some(2)), Some(0));
        assert_eq!(round_robin(&[false, false], Some(1)), None);
        assert_eq!(round_robin(&[], None), None);
    }

    #[test]
    fn six_clients_spread_two_two_two_in_order() {
        let mut l = loads(&[0, 0, 0]);
        assert_eq!(assign(&mut l, 6), [0, 1, 2, 0, 1, 2]);
        assert_eq!(l.iter().map(|l| l.live).collect::<Vec<_>>(), [2, 2, 2]);
    }

    #[test]
    fn fewest_live_sessions_wins() {
        assert_eq!(least_connections(&loads(&[3, 1, 2]), None), Some(1));
        assert_eq!(least_connections(&loads(&[3, 1, 2]), Some(1)), Some(1));
    }

    #[test]
    fn freed_slot_is_filled_next() {
        let mut l = loads(&[0, 0, 0]);
        let order = assign(&mut l, 6);
        l[1].live -= 1; // a client of the second backend leaves
        assert_eq!(least_connections(&l, order.last().copied()), Some(1));
    }

    #[test]
    fn ties_go_round_robin_after_last() {
        let l = loads(&[1, 1, 1]);
        assert_eq!(least_connections(&l, None), Some(0));
        assert_eq!(least_connections(&l, Some(0)), Some(1));
        assert_eq!(least_connections(&l, Some(2)), Some(0));
        let l = loads(&[1, 0, 0, 1]);
        assert_eq!(least_connections(&l, Some(1)), Some(2));
        assert_eq!(least_connections(&l, Some(2)), Some(1));
    }

    #[test]
    fn only_usable_backends_are_chosen() {
        let mut l = loads(&[5, 0, 0]);
        l[1].usable = false;
        l[2].usable = false;
        assert_eq!(least_connections(&l, None), Some(0));
        l[0].usable = false;
        assert_eq!(least_connections(&l, None), None);
        assert_eq!(least_connections(&[], None), None);
    }

    #[test]
    fn weights_scale_the_share() {
        let mut l = loads(&[0, 0, 0]);
        l[0].weight = 2;
        assign(&mut l, 8);
        assert_eq!(l.iter().map(|l| l.live).collect::<Vec<_>>(), [4, 2, 2]);
        // 3 live on weight 3 (1 each) ties with 1 live on weight 1; 2 on weight 1 loses.
        let l = [
            Load {
                usable: true,
                live: 3,
                weight: 3,
            },
            Load {
                usable: true,
                live: 2,
                weight: 1,
            },
            Load {
                usable: true,
                live: 1,
                weight: 1,
            },
        ];
        assert_eq!(least_connections(&l, None), Some(0));
        assert_eq!(least_connections(&l, Some(0)), Some(2));
    }

    #[test]
    fn zero_weight_acts_as_one() {
        let l = [
            Load {
                usable: true,
                live: 1,
                weight: 0,
            },
            Load {
                usable: true,
                live: 2,
                weight: 1,
            },
        ];
        assert_eq!(least_connections(&l, Some(1)), Some(0));
    }
}
