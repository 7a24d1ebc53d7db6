//! A deterministic simulation of partition rebalancing with the workers' assignment
//! (rendezvous hashing, `nhiwatch_stream::partition::owner`), against the naive `p mod W`:
//! workers join and leave; count the partitions that move and the load skew, with identity
//! activity as skewed as real fleets (Zipf). `cargo test -p nhiwatch-stream --test rebalance
//! -- --nocapture` prints the table quoted in docs/scale-out.md.

use std::collections::BTreeMap;

use nhiwatch_stream::partition::{owner, partition_of};

/// SplitMix64: a fixed, seedable generator (no dependency, same numbers everywhere).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Events per partition for `identities` identities whose activity follows Zipf(`s`) (for
/// `s` = 1 the busiest does as much as the next two together, and so on down a long quiet
/// tail; `s` = 0 is uniform).
fn partition_load(identities: usize, partitions: u32, s: f64) -> Vec<f64> {
    let mut load = vec![0.0; partitions as usize];
    for rank in 1..=identities {
        let id = format!("arn:aws:iam::111122223333:role/service-{rank}");
        load[partition_of(&id, partitions) as usize] += (rank as f64).powf(-s);
    }
    load
}

fn assign_rendezvous(partitions: u32, workers: &[String]) -> Vec<String> {
    (0..partitions)
        .map(|p| {
            owner(p, workers.iter().map(String::as_str))
                .unwrap()
                .to_owned()
        })
        .collect()
}

fn assign_modulo(partitions: u32, workers: &[String]) -> Vec<String> {
    (0..partitions)
        .map(|p| workers[p as usize % workers.len()].clone())
        .collect()
}

/// Max over mean of the workers' loads.
fn skew(assignment: &[String], load: &[f64], workers: &[String]) -> f64 {
    let mut per: BTreeMap<&str, f64> = workers.iter().map(|w| (w.as_str(), 0.0)).collect();
    for (p, w) in assignment.iter().enumerate() {
        *per.get_mut(w.as_str()).unwrap() += load[p];
    }
    let total: f64 = per.values().sum();
    let max = per.values().cloned().fold(0.0, f64::max);
    max / (total / workers.len() as f64)
}

#[derive(Default)]
struct Tally {
    steps: u32,
    moved: u32,
    ideal: f64,
    between_survivors: u32,
    skew_sum: f64,
    skew_max: f64,
    uniform_skew_sum: f64,
}

/// Runs `steps` membership changes (a worker joins or one leaves, at random, keeping 2-24
/// workers) and tallies both schemes.
fn simulate(partitions: u32, identities: usize, steps: u32, seed: u64) -> (Tally, Tally) {
    let load = partition_load(identities, partitions, 1.0);
    let uniform = partition_load(identities, partitions, 0.0);
    let mut rng = Rng(seed);
    let mut next_id = 0;
    let mut name = || {
        next_id += 1;
        format!("worker-{next_id}")
    };
    let mut workers: Vec<String> = (0..4).map(|_| name()).collect();
    let mut tallies = (Tally::default(), Tally::default());
    for _ in 0..steps {
        let before = workers.clone();
        let join = workers.len() <= 2 || (workers.len() < 24 && rng.next().is_multiple_of(2));
        if join {
            workers.push(name());
        } else {
            let leaving = (rng.next() % workers.len() as u64) as usize;
            workers.remove(leaving);
        }
        for (scheme, tally) in [
            (
                assign_rendezvous as fn(u32, &[String]) -> Vec<String>,
                &mut tallies.0,
            ),
            (assign_modulo, &mut tallies.1),
        ] {
            let old = scheme(partitions, &before);
            let new = scheme(partitions, &workers);
            let moved = old.iter().zip(&new).filter(|(a, b)| a != b).count() as u32;
            let survivors = old
                .iter()
                .zip(&new)
                .filter(|(a, b)| a != b && workers.contains(a) && before.contains(b))
                .count() as u32;
            // The least that must move: the joiner's fair share, or the leaver's partitions.
            let ideal = f64::from(partitions) / before.len().max(workers.len()) as f64;
            let s = skew(&new, &load, &workers);
            tally.steps += 1;
            tally.moved += moved;
            tally.ideal += ideal;
            tally.between_survivors += survivors;
            tally.skew_sum += s;
            tally.skew_max = tally.skew_max.max(s);
            tally.uniform_skew_sum += skew(&new, &uniform, &workers);
        }
    }
    tallies
}

#[test]
fn rendezvous_moves_about_the_minimum_and_keeps_load_even() {
    println!(
        "{:>10} {:>10} {:>11} {:>13} {:>14} {:>13} {:>13} {:>13}",
        "partitions",
        "scheme",
        "moved/step",
        "minimum/step",
        "between-alive",
        "skew uniform",
        "skew Zipf",
        "max skew Zipf"
    );
    for partitions in [12u32, 64, 256] {
        let (rendezvous, modulo) = simulate(partitions, 100_000, 200, 7);
        for (label, t) in [("rendezvous", &rendezvous), ("modulo", &modulo)] {
            println!(
                "{partitions:>10} {label:>10} {:>11.1} {:>13.1} {:>14} {:>13.2} {:>13.2} {:>13.2}",
                f64::from(t.moved) / f64::from(t.steps),
                t.ideal / f64::from(t.steps),
                t.between_survivors,
                t.uniform_skew_sum / f64::from(t.steps),
                t.skew_sum / f64::from(t.steps),
                t.skew_max
            );
        }
        // Rendezvous never moves a partition between two workers that both stay, and moves
        // close to the minimum; modulo reshuffles most partitions at every change.
        assert_eq!(rendezvous.between_survivors, 0);
        assert!(
            f64::from(rendezvous.moved) <= 1.05 * rendezvous.ideal + f64::from(rendezvous.steps)
        );
        assert!(modulo.moved > 2 * rendezvous.moved);
    }
    // With many partitions per worker and even activity, the busiest worker carries little
    // above the mean (with Zipf activity the hottest identity, which cannot be split, sets
    // the floor).
    let (many, _) = simulate(256, 100_000, 200, 7);
    let uniform = many.uniform_skew_sum / f64::from(many.steps);
    assert!(uniform < 1.3, "{uniform}");
}
