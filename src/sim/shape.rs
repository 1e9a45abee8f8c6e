//! [`Shape`]: the degrees, components and diameter of the graph the mesh built.

use std::collections::VecDeque;

use super::Components;
use super::network::Sim;
use super::node::Node;

/// The shape of the graph of working links between running clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    /// Running clients.
    pub clients: usize,
    /// Working links.
    pub links: usize,
    /// Links per running client: smallest, median and largest.
    pub degree: [usize; 3],
    /// Most links any running client accepted (rather than dialed).
    pub max_inbound: usize,
    /// Connected components of running clients.
    pub components: usize,
    /// Most hops between two clients of one component, over every component.
    pub diameter: usize,
}

impl Shape {
    /// The shape of `sim`'s graph now.
    pub fn of<N: Node>(sim: &Sim<N>) -> Self {
        let n = sim.clients();
        let alive: Vec<usize> = (0..n).filter(|&c| sim.is_alive(c)).collect();
        let edges = sim.graph();
        let mut adjacent = vec![Vec::new(); n];
        let mut inbound = vec![0; n];
        for &[a, b] in &edges {
            adjacent[a].push(b);
            adjacent[b].push(a);
            inbound[b] += 1;
        }
        let mut degrees: Vec<usize> = alive.iter().map(|&c| adjacent[c].len()).collect();
        degrees.sort_unstable();
        let degree = if degrees.is_empty() {
            [0; 3]
        } else {
            [
                degrees[0],
                degrees[degrees.len() / 2],
                degrees[degrees.len() - 1],
            ]
        };
        let mut forest = Components::new(n, edges.iter().copied());
        let mut roots: Vec<usize> = alive.iter().map(|&c| forest.of(c)).collect();
        roots.sort_unstable();
        roots.dedup();
        let mut diameter = 0;
        let mut dist = vec![usize::MAX; n];
        let mut queue = VecDeque::new();
        for &s in &alive {
            dist.iter_mut().for_each(|d| *d = usize::MAX);
            dist[s] = 0;
            queue.push_back(s);
            while let Some(x) = queue.pop_front() {
                diameter = diameter.max(dist[x]);
                for &y in &adjacent[x] {
                    if dist[y] == usize::MAX {
                        dist[y] = dist[x] + 1;
                        queue.push_back(y);
                    }
                }
            }
        }
        Self {
            clients: alive.len(),
            links: edges.len(),
            degree,
            max_inbound: alive.iter().map(|&c| inbound[c]).max().unwrap_or(0),
            components: roots.len(),
            diameter,
        }
    }
}
