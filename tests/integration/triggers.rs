//! Release triggers on a real service: a release schedule fires at its times, and each time at
//! most once, even when the clock steps back over it. (Continuous deployment across a SIGKILL
//! is in `service.rs`; cron across daylight saving time in the core's tests.)

use crate::support::Harness;

fn pipeline(cron: &str) -> String {
    format!(
        r#"
version = 1
name = "web"
[triggers.schedule]
cron = "{cron}"
time-zone = "Europe/Berlin"
[[stages]]
name = "dev"
[[stages.tasks]]
plugin = "./kit.wasm"
config = {{ action = "noop" }}
"#
    )
}

/// The descriptions of the releases of `web`, oldest first.
fn releases(h: &Harness) -> Vec<String> {
    let mut all = h.service.store().releases().unwrap();
    all.sort_by_key(|r| r.number);
    all.into_iter()
        .map(|r| r.description.unwrap_or_default())
        .collect()
}

#[test]
fn a_release_schedule_creates_a_release_at_each_time() {
    // Every second (cron with a seconds field).
    let h = Harness::serve(&pipeline("* * * * * *"));
    h.wait("two scheduled releases", |h| releases(h).len() >= 2);
    let made = releases(&h);
    assert!(
        made.iter().all(
            |d| d.starts_with("scheduled: `* * * * * *` at ") && d.ends_with("[Europe/Berlin]")
        ),
        "{made:?}"
    );
    assert_ne!(made[0], made[1], "two different times");
    let release = h.service.store().releases().unwrap().remove(0);
    assert_eq!(release.creator, "trigger:schedule");
}

#[test]
fn a_scheduled_time_reached_again_after_the_clock_stepped_back_creates_no_second_release() {
    // Never due while the test runs: the test plays the trigger loop's part.
    let h = Harness::serve(&pipeline("0 3 1 1 *"));
    let at = 1_798_768_800_000; // 2027-01-01T02:00:00Z = 03:00 in Berlin
    let first = h.runtime.block_on(h.service.fire_schedule("web", at));
    let name = first.unwrap().expect("the first time creates a release");
    // The wall clock steps back an hour and reaches 03:00 again; or the service restarted.
    let again = h.runtime.block_on(h.service.fire_schedule("web", at));
    assert_eq!(again.unwrap(), None);
    assert_eq!(releases(&h).len(), 1);
    assert_eq!(
        releases(&h)[0],
        "scheduled: `0 3 1 1 *` at 2027-01-01T03:00:00+01:00[Europe/Berlin]"
    );
    assert!(h.service.release(&name).is_ok());
}
