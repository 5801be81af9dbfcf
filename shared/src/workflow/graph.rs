//! Graph checks over node ids and their `inputs`: topological order and cycle detection, both iterative (Kahn's
//! algorithm) so a 10,000-node chain cannot overflow the stack.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Either a topological order of every node, or one cycle (its node ids in order, first node repeated last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TopoResult {
    Order(Vec<String>),
    Cycle(Vec<String>),
}

/// `edges` maps each node id to the ids it depends on (its inputs). Inputs naming unknown ids are ignored:
/// validation reports them separately. Ties are broken by id, so the order is deterministic.
pub(crate) fn topological_order(edges: &BTreeMap<String, Vec<String>>) -> TopoResult {
    let mut pending: BTreeMap<&str, usize> = BTreeMap::new();
    let mut dependents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (id, inputs) in edges {
        let known: BTreeSet<&str> = inputs.iter().map(String::as_str).filter(|dep| edges.contains_key(*dep)).collect();
        pending.insert(id, known.len());
        for dep in known {
            dependents.entry(dep).or_default().push(id);
        }
    }
    let mut ready: VecDeque<&str> = pending.iter().filter(|(_, count)| **count == 0).map(|(id, _)| *id).collect();
    let mut order = Vec::with_capacity(edges.len());
    while let Some(id) = ready.pop_front() {
        order.push(id.to_owned());
        for dependent in dependents.get(id).into_iter().flatten() {
            if let Some(count) = pending.get_mut(dependent) {
                *count -= 1;
                if *count == 0 {
                    ready.push_back(dependent);
                }
            }
        }
    }
    if order.len() == edges.len() {
        return TopoResult::Order(order);
    }
    let placed: BTreeSet<&str> = order.iter().map(String::as_str).collect();
    TopoResult::Cycle(find_cycle(edges, &placed))
}

/// Every node Kahn's algorithm could not place has an unplaced input, so walking unplaced inputs backwards
/// from any unplaced node must revisit a node: the walk from that node on is a cycle.
fn find_cycle(edges: &BTreeMap<String, Vec<String>>, placed: &BTreeSet<&str>) -> Vec<String> {
    let unplaced = |id: &str| edges.contains_key(id) && !placed.contains(id);
    let Some(start) = edges.keys().find(|id| unplaced(id)) else {
        return Vec::new();
    };
    let mut walk: Vec<&str> = vec![start];
    let mut seen: BTreeMap<&str, usize> = BTreeMap::from([(start.as_str(), 0)]);
    loop {
        let current = walk[walk.len() - 1];
        let Some(next) = edges[current].iter().find(|dep| unplaced(dep)) else {
            return Vec::new();
        };
        if let Some(&at) = seen.get(next.as_str()) {
            // The walk follows inputs (dependent -> dependency); report the cycle in data-flow order.
            let mut cycle: Vec<String> = walk[at..].iter().rev().map(|s| (*s).to_owned()).collect();
            cycle.push(cycle[0].clone());
            return cycle;
        }
        seen.insert(next, walk.len());
        walk.push(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        pairs.iter().map(|(id, deps)| ((*id).to_owned(), deps.iter().map(|d| (*d).to_owned()).collect())).collect()
    }

    #[test]
    fn orders_dependencies_first() {
        let g = graph(&[("c", &["a", "b"]), ("b", &["a"]), ("a", &[])]);
        assert_eq!(topological_order(&g), TopoResult::Order(vec!["a".into(), "b".into(), "c".into()]));
    }

    #[test]
    fn finds_a_cycle_and_ignores_nodes_downstream_of_it() {
        let g = graph(&[("a", &["c"]), ("b", &["a"]), ("c", &["b"]), ("d", &["c"]), ("e", &[])]);
        let TopoResult::Cycle(cycle) = topological_order(&g) else { panic!("no cycle found") };
        assert_eq!(cycle.first(), cycle.last());
        assert_eq!(cycle.len(), 4);
        assert!(!cycle.contains(&"d".to_owned()));
    }

    #[test]
    fn long_chain_does_not_overflow() {
        let n = 10_000;
        let mut g = BTreeMap::new();
        for i in 0..n {
            let deps = if i == 0 { vec![] } else { vec![format!("n{}", i - 1)] };
            g.insert(format!("n{i}"), deps);
        }
        let TopoResult::Order(order) = topological_order(&g) else { panic!("chain has no cycle") };
        assert_eq!(order.len(), n);
        assert_eq!(order[0], "n0");
        assert_eq!(order[n - 1], format!("n{}", n - 1));
        // Close the chain into one big cycle.
        g.insert("n0".into(), vec![format!("n{}", n - 1)]);
        let TopoResult::Cycle(cycle) = topological_order(&g) else { panic!("ring not detected") };
        assert_eq!(cycle.len(), n + 1);
    }
}
