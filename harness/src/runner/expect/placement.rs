//! Where clients were placed: `placement`, `balanced`, `not_on`.

use std::collections::BTreeSet;

use super::{judgement, Judgement};
use crate::runner::evidence::Evidence;
use crate::scenario::{server_name, ServerIdx};

/// Exactly these clients on these servers, none on the others.
pub(super) fn placement(
    line: Option<usize>,
    ev: &Evidence,
    map: &[(ServerIdx, Vec<String>)],
) -> Judgement {
    let actual = ev.placements();
    let mut wrong = Vec::new();
    for (i, got) in actual.iter().enumerate() {
        let want: Vec<String> = map
            .iter()
            .find(|(s, _)| *s == i)
            .map(|(_, c)| c.clone())
            .unwrap_or_default();
        let got_set: BTreeSet<&String> = got.iter().collect();
        let want_set: BTreeSet<&String> = want.iter().collect();
        if got_set != want_set {
            wrong.push(format!(
                "{} has [{}], expected [{}]",
                server_name(i),
                got.join(", "),
                want.join(", ")
            ));
        }
    }
    let shown = placement_text(&actual);
    judgement(
        line,
        format!(
            "placement exactly {}",
            map.iter()
                .map(|(s, c)| format!("{}: [{}]", server_name(*s), c.join(", ")))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        wrong.is_empty(),
        if wrong.is_empty() {
            format!("placed {shown}")
        } else {
            wrong.join("; ")
        },
        String::new(),
    )
}

/// Most and least loaded server differ by at most `bound` clients.
pub(super) fn balanced(line: Option<usize>, ev: &Evidence, bound: u32) -> Judgement {
    let counts: Vec<usize> = ev.placements().iter().map(|c| c.len()).collect();
    let spread = counts.iter().max().unwrap_or(&0) - counts.iter().min().unwrap_or(&0);
    judgement(
        line,
        format!("clients balanced: most and least loaded server differ by at most {bound}"),
        spread <= bound as usize && counts.iter().sum::<usize>() > 0,
        format!(
            "clients per server {}; spread {spread}",
            counts
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join("/")
        ),
        String::new(),
    )
}

/// These clients were placed, and not on these servers.
pub(super) fn not_on(
    line: Option<usize>,
    ev: &Evidence,
    map: &[(ServerIdx, Vec<String>)],
) -> Judgement {
    let mut wrong = Vec::new();
    let mut unplaced = Vec::new();
    for (s, clients) in map {
        for c in clients {
            match ev.placement_of(c) {
                Some(p) if p == *s => wrong.push(format!("{c} is on {}", server_name(*s))),
                Some(_) => {}
                None => unplaced.push(c.clone()),
            }
        }
    }
    let ok = wrong.is_empty() && unplaced.is_empty();
    judgement(
        line,
        format!(
            "not placed on {}",
            map.iter()
                .map(|(s, c)| format!("{}: [{}]", server_name(*s), c.join(", ")))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        ok,
        if ok {
            "none of them is there; all are placed elsewhere".into()
        } else {
            let mut parts = wrong;
            if !unplaced.is_empty() {
                parts.push(format!("not placed at all: {}", unplaced.join(", ")));
            }
            parts.join("; ")
        },
        String::new(),
    )
}

/// `s1 [a, b], s2 [c]`.
pub fn placement_text(placements: &[Vec<String>]) -> String {
    placements
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{} [{}]", server_name(i), c.join(", ")))
        .collect::<Vec<_>>()
        .join(", ")
}
