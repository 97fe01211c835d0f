//! proptest schedules and saved regressions: any sequence of simulator choices
//! must keep every invariant, a linearizable history, and complete every
//! request once faults stop. A failure shrinks to a small schedule, printed in
//! the format tests/fixtures/schedules.txt keeps.

use proptest::prelude::*;
use vr_tests::simulator::{self, Choice, SimConfig};

fn choice() -> impl Strategy<Value = Choice> {
    prop_oneof![
        2 => (any::<u8>(), any::<bool>()).prop_map(|(client, write)| Choice::Client { client, write }),
        1 => any::<u16>().prop_map(Choice::Timer),
        1 => any::<u8>().prop_map(Choice::Crash),
        1 => any::<u8>().prop_map(Choice::Restart),
        8 => any::<u16>().prop_map(Choice::Deliver),
        1 => any::<u16>().prop_map(Choice::Lose),
        1 => any::<u16>().prop_map(Choice::Duplicate),
    ]
}

fn config() -> SimConfig {
    SimConfig {
        replicas: 3,
        clients: 2,
        ..SimConfig::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("VR_PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(64),
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_schedule_keeps_the_invariants_and_completes_its_requests(
        schedule in proptest::collection::vec(choice(), 0..400)
    ) {
        let result = std::panic::catch_unwind(|| simulator::run_schedule(&schedule, config()));
        prop_assert!(result.is_ok(), "schedule: {}", simulator::format_schedule(&schedule));
    }
}

#[test]
fn every_saved_schedule_replays_safely() {
    let text = include_str!("../fixtures/schedules.txt");
    let mut replayed = 0;
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let schedule = simulator::parse_schedule(line).expect("a well-formed saved schedule");
        assert_eq!(
            simulator::format_schedule(&schedule),
            line,
            "the format round-trips"
        );
        let report = simulator::run_schedule(&schedule, config());
        assert!(report.settled);
        replayed += 1;
    }
    assert!(replayed >= 2);
}

#[test]
fn the_first_saved_schedule_does_what_its_comment_says() {
    let schedule = simulator::parse_schedule(
        "w0 d0 d0 x0 t0 d0 d0 d0 d0 d0 d0 d0 d0 d0 d0 d0 d0 w0 d0 d0 d0 d0 d0 d0",
    )
    .unwrap();
    let report = simulator::run_schedule(&schedule, config());
    assert_eq!(report.crashes, 1);
    assert!(report.completed >= 1);
    assert!(report.max_view >= 1, "a view change happened");
}
