//! The `malformed` scenario's messages (model/src/malformed.rs) each meet the
//! guard named for them: at the scenario's start, where each is in flight,
//! delivering it to its receiver changes nothing but the Ack the delivery
//! layer sends, and the receiver logs that guard's reason.

use stateright::Model;
use std::io::Write;
use std::sync::{Arc, Mutex};
use vr::core::{Effect, Input, Message};
use vr_model::actors::{ActorState, Msg};
use vr_model::malformed;

/// What the core logs, kept for the test to read.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// The lines logged since the last call, and forgets them.
    fn take(&self) -> String {
        String::from_utf8(std::mem::take(&mut *self.0.lock().unwrap())).unwrap()
    }
}

#[test]
fn every_malformed_message_is_refused_by_its_guard_and_changes_nothing_but_an_ack() {
    let scenario = vr_model::scenarios::named("malformed").unwrap();
    let start = scenario
        .config
        .into_model()
        .unwrap()
        .init_states()
        .remove(0);
    let replica = |id: usize| match &*start.actor_states[id] {
        ActorState::Replica(r) => r.replica.clone(),
        other => panic!("actor {id} is not a replica: {other:?}"),
    };
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let crafted = malformed::envelopes();
        for m in &crafted {
            let sent = start.network.iter_all().any(|e| {
                usize::from(e.dst) == usize::from(m.to.0)
                    && usize::from(e.src) == usize::from(m.envelope.from.0)
                    && matches!(e.msg, Msg::Replica(env) if **env == m.envelope)
            });
            assert!(sent, "not in flight at the start: {:?}", m.envelope);
            let before = replica(usize::from(m.to.0));
            let mut after = before.clone();
            let mut effects = Vec::new();
            after.step(Input::Deliver(m.envelope.clone()), &mut effects);
            let log = captured.take();
            assert_eq!(after, before, "{:?} changed {:?}:\n{log}", m.envelope, m.to);
            let acked = matches!(
                effects.as_slice(),
                [Effect::Send { to, envelope }]
                    if *to == m.envelope.from
                        && envelope.id == m.envelope.id
                        && matches!(envelope.msg, Message::Ack(_))
            );
            assert!(
                if m.acked { acked } else { effects.is_empty() },
                "{:?}: {effects:?}",
                m.envelope
            );
            let ignored = format!("ignore {}", m.envelope.msg.name());
            assert!(
                log.lines().any(|l| (l.contains(&ignored)
                    || l.contains("ignore envelope")
                    || l.contains("ignore client message"))
                    && l.contains(m.refused_by)),
                "{:?} to {:?} was not refused by {:?}:\n{log}",
                m.envelope,
                m.to,
                m.refused_by
            );
        }
        // Every clause of every guard: one message each, none twice.
        assert_eq!(crafted.len(), 30);
        for (to, request, refused_by) in malformed::requests() {
            let sent = start.network.iter_all().any(|e| {
                usize::from(e.dst) == usize::from(to.0)
                    && matches!(e.msg, Msg::Request(r) if *r == request)
            });
            assert!(sent, "not in flight at the start: {request:?}");
            let before = replica(usize::from(to.0));
            let mut after = before.clone();
            let mut effects = Vec::new();
            after.step(Input::Request(request.clone()), &mut effects);
            let log = captured.take();
            assert_eq!(after, before, "{request:?} changed {to:?}:\n{log}");
            assert!(effects.is_empty(), "{request:?}: {effects:?}");
            assert!(
                log.lines()
                    .any(|l| l.contains("ignore Request") && l.contains(refused_by)),
                "{request:?} to {to:?} was not refused by {refused_by:?}:\n{log}"
            );
        }
    });
}
