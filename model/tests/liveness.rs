//! The progress properties on hand-built states (spec/invariants.md,
//! "Progress properties").

use vr::core::{ClientId, Command, Config, Message, ReplicaId, Request, RequestNumber, Timer};
use vr_model::driver::Driver;
use vr_model::liveness;
use vr_model::register::Register;

const ATTEMPTS_MAX: u8 = 3;

/// The shape the lossy simulation reached (seed 2000006): primary 1 of
/// view 1 admits a request and its Prepare reaches backup 0 only; every copy
/// of 0's PrepareOk is lost, and 1's Prepare is not resent. Replica 2, the
/// next view's primary, restarted and is still recovering (its Recovery
/// messages were lost), so 0 and 1 are the quorum. Backup 0 is left with its
/// PrepareOk on attempt `attempts` and nothing in flight.
fn prepare_ok_lost(attempts: u8) -> Driver<Register> {
    let configs: Vec<Config> = (0..3)
        .map(|i| Config::with_settings(3, ReplicaId(i), ATTEMPTS_MAX, 16).unwrap())
        .collect();
    let mut d = Driver::<Register>::new(&configs);
    assert!(d.fire(2, Timer::PrimaryTimeout));
    d.deliver_all();
    assert!(d.replica(1).unwrap().is_primary());
    d.crash(2);
    d.restart(configs[2], 1);
    d.deliver_while(|_, _| false);
    d.request(
        1,
        Request {
            operation: Command::Register,
            client: ClientId::provisional(7),
            request: RequestNumber(1),
        },
    );
    d.deliver_while(|to, e| to == ReplicaId(0) && matches!(e.msg, Message::Prepare(_)));
    for _ in 1..attempts {
        d.fire(0, Timer::Resend);
        d.deliver_while(|_, _| false);
    }
    let backup = d.replica(0).unwrap();
    let prepare_ok = backup
        .delivery()
        .unconfirmed()
        .iter()
        .map(|(_, u)| u)
        .find(|u| matches!(u.msg, Message::PrepareOk(_)))
        .unwrap();
    assert_eq!(prepare_ok.attempts, attempts);
    assert!(d.in_flight.is_empty());
    let primary = d.replica(1).unwrap();
    assert!(primary.commit_number().as_op() < primary.op_number());
    d
}

#[test]
fn a_primary_whose_backup_still_has_a_resend_left_must_commit_without_a_failure_detector() {
    // No detector is due, so LIVE-COMMIT makes its claim: the backup's next
    // Resend carries the PrepareOk's last attempt to the primary, which
    // commits.
    let d = prepare_ok_lost(ATTEMPTS_MAX - 1);
    assert_eq!(liveness::live_commit(&d), Ok(()));
    assert_eq!(liveness::live_view(&d), Ok(()));
}

#[test]
fn a_backup_due_to_count_its_primary_disconnected_leaves_progress_to_live_view() {
    // The backup's next Resend expiry counts primary 1 disconnected and
    // starts a view change (spec/protocol.md, "Disconnection"), however
    // healthy 1 is: the losses already ran that detector down. The next
    // primary is recovering, so only ViewChangeTimeout, a failure detector,
    // forms a view. LIVE-COMMIT claims nothing there; LIVE-VIEW still claims
    // a view forms and commits.
    let d = prepare_ok_lost(ATTEMPTS_MAX);
    assert_eq!(liveness::live_commit(&d), Ok(()));
    assert_eq!(liveness::live_view(&d), Ok(()));
}
