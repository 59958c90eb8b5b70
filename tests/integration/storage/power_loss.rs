//! Power losses at many points: runs of several releases at once (group commit), each traced on
//! the fault backend and cut at seeded random I/O calls, keeping a seeded random part of what
//! was not synced (`PowerLoss::KeepSome`). After each cut the store reopens with every commit
//! acknowledged before the cut, whole, and nothing half-written. 200 points in `cargo test`;
//! `SLUICE_FAULT_POINTS=5000` for more.

use sluice::store::Store;
use sluice::store::faulty::{FaultPlan, PowerLoss};

use super::workload::{NOOP, Rig, before, check, reopen, run};

/// Points cut from each traced run.
const PER_RUN: u64 = 50;

/// Releases created and driven at once in each run.
const RELEASES: usize = 4;

/// A seeded generator (xorshift64*): the same points every time.
struct Seeded(u64);

impl Seeded {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn points() -> u64 {
    std::env::var("SLUICE_FAULT_POINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

#[test]
fn a_power_loss_at_any_of_many_points_keeps_every_acknowledged_commit_whole() {
    let rig = Rig::new(NOOP);
    let mut rng = Seeded(0x5EED_0013);
    let total = points();
    let mut done = 0;
    let mut resumed = 0;
    while done < total {
        let dir = tempfile::tempdir().expect("temp dir");
        let plan = FaultPlan::new();
        let store = Store::open_faulty(dir.path(), &plan).expect("opens");
        plan.start_trace();
        let first = plan.io_calls() + 1;
        let traced = run(&rig, dir.path(), store, Some(&plan), RELEASES);
        traced.assert_succeeded("the traced run");
        let last = plan.io_calls();
        assert!(last > first + 50, "the run made {} I/O calls", last - first);
        for _ in 0..PER_RUN.min(total - done) {
            let cut = first + rng.next() % (last - first + 1);
            let seed = rng.next();
            let at = format!("power lost before I/O call {cut} of {last}, keeping seed {seed}");
            let image = tempfile::tempdir().expect("temp dir");
            std::fs::write(
                image.path().join("sluice.redb"),
                plan.image_at(cut, PowerLoss::KeepSome(seed)),
            )
            .expect("writes the image");
            let store = reopen(image.path(), &at);
            let acked = before(&traced.acks, cut);
            check(&store, &acked, 1, &at);
            // Now and then, the reopened store also finishes every release it holds.
            if done % 50 == 0 {
                let after = run(&rig, image.path(), store, None, 0);
                after.assert_succeeded(&at);
                resumed += 1;
            }
            done += 1;
        }
    }
    eprintln!("{done} power losses, {resumed} of them resumed to the end");
    assert!(resumed >= 1);
}
