//! Which exporting cluster a new connection to an imported service goes to (pure).
//!
//! Clusters with healthy endpoints come first, those in our own region before the
//! others; within a group the first choice is weighted by healthy endpoints, and the rest
//! follow as fallbacks, most healthy first. Clusters that report no healthy endpoint, or
//! whose gateway is unreachable now, come last: they are tried only when everything else
//! fails, since their report may be stale.

use crate::membership::view::Exporter;

/// The region of a locality (`region` or `region/zone`).
fn region(locality: Option<&str>) -> Option<&str> {
    locality.map(|l| l.split('/').next().unwrap_or(l))
}

/// The clusters to try, in order. `down` says whether a cluster's gateway is known to be
/// unreachable now; `sample` is a random number.
pub fn order(
    exporters: &[Exporter],
    own_locality: Option<&str>,
    down: impl Fn(&str) -> bool,
    sample: u64,
) -> Vec<String> {
    let own = region(own_locality);
    let usable = |e: &&Exporter| e.healthy > 0 && !down(&e.cluster);
    let local: Vec<&Exporter> = exporters
        .iter()
        .filter(usable)
        .filter(|e| own.is_some() && region(e.locality.as_deref()) == own)
        .collect();
    let remote: Vec<&Exporter> = exporters
        .iter()
        .filter(usable)
        .filter(|e| !(own.is_some() && region(e.locality.as_deref()) == own))
        .collect();
    let mut out = Vec::with_capacity(exporters.len());
    for group in [local, remote] {
        out.extend(weighted(group, sample));
    }
    let mut rest: Vec<&Exporter> = exporters.iter().filter(|e| !usable(e)).collect();
    rest.sort_by(|a, b| b.healthy.cmp(&a.healthy).then(a.cluster.cmp(&b.cluster)));
    out.extend(rest.into_iter().map(|e| e.cluster.clone()));
    out
}

/// The first pick weighted by healthy endpoints, then the others most healthy first.
fn weighted(mut group: Vec<&Exporter>, sample: u64) -> Vec<String> {
    if group.is_empty() {
        return Vec::new();
    }
    group.sort_by(|a, b| b.healthy.cmp(&a.healthy).then(a.cluster.cmp(&b.cluster)));
    let total: u64 = group.iter().map(|e| u64::from(e.healthy)).sum();
    let mut point = sample % total.max(1);
    let mut first = 0;
    for (i, e) in group.iter().enumerate() {
        if point < u64::from(e.healthy) {
            first = i;
            break;
        }
        point -= u64::from(e.healthy);
    }
    let pick = group.remove(first);
    std::iter::once(pick)
        .chain(group)
        .map(|e| e.cluster.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(cluster: &str, healthy: u32, locality: &str) -> Exporter {
        Exporter {
            cluster: cluster.into(),
            healthy,
            locality: Some(locality.into()),
        }
    }

    #[test]
    fn first_choices_follow_healthy_endpoint_weights() {
        let exporters = [e("a", 1, "r1"), e("b", 3, "r1")];
        let mut firsts = std::collections::BTreeMap::new();
        for sample in 0..4000u64 {
            let order = order(
                &exporters,
                None,
                |_| false,
                sample.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            );
            assert_eq!(order.len(), 2);
            *firsts.entry(order[0].clone()).or_insert(0) += 1;
        }
        let (a, b) = (firsts["a"], firsts["b"]);
        assert!(
            (800..1200).contains(&a) && (2800..3200).contains(&b),
            "{firsts:?}"
        );
    }

    #[test]
    fn the_own_region_comes_first_while_it_is_healthy() {
        let exporters = [e("far", 10, "us-east"), e("near", 1, "eu-west/b")];
        for sample in 0..100 {
            assert_eq!(
                order(&exporters, Some("eu-west/a"), |_| false, sample),
                ["near", "far"]
            );
        }
        let sick = [e("far", 10, "us-east"), e("near", 0, "eu-west/b")];
        assert_eq!(order(&sick, Some("eu-west"), |_| false, 3), ["far", "near"]);
    }

    #[test]
    fn an_unreachable_gateway_is_tried_last() {
        let exporters = [e("a", 5, "r"), e("b", 5, "r"), e("c", 0, "r")];
        for sample in 0..50 {
            let order = order(&exporters, None, |c| c == "a", sample);
            assert_eq!(order, ["b", "a", "c"]);
        }
        assert_eq!(order(&[], None, |_| false, 1), Vec::<String>::new());
    }
}
