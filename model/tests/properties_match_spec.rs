//! The model checks exactly the invariants and progress properties
//! spec/invariants.md lists, by id.

use std::collections::BTreeSet;
use vr_model::properties::invariant_ids;

fn spec_ids() -> BTreeSet<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../spec/invariants.md");
    let text = std::fs::read_to_string(path).expect("spec/invariants.md is readable");
    let mut ids = BTreeSet::new();
    for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')) {
        let id = ["INV-", "LIVE-"]
            .iter()
            .any(|p| word.starts_with(p) && word.len() > p.len());
        if id {
            ids.insert(word.trim_end_matches('-').to_string());
        }
    }
    ids
}

#[test]
fn every_invariant_in_the_spec_is_a_model_property_and_every_property_is_in_the_spec() {
    let spec = spec_ids();
    let model: BTreeSet<String> = invariant_ids().into_iter().map(String::from).collect();
    let missing_in_model: Vec<_> = spec.difference(&model).collect();
    let missing_in_spec: Vec<_> = model.difference(&spec).collect();
    assert!(
        missing_in_model.is_empty() && missing_in_spec.is_empty(),
        "spec/ ids without a model property: {missing_in_model:?}; model properties without a spec/ id: {missing_in_spec:?}"
    );
    assert!(spec.len() >= 10, "the spec lists the invariants: {spec:?}");
}

#[test]
fn the_core_and_the_model_name_the_same_state_invariants() {
    let state_ids: BTreeSet<&str> =
        vr_model::invariants::state_invariant_ids::<vr_model::register::Register>()
            .into_iter()
            .collect();
    let properties: BTreeSet<&str> = invariant_ids().into_iter().collect();
    assert!(state_ids.is_subset(&properties));
    assert_eq!(
        properties.len(),
        state_ids.len() + 1 + vr_model::liveness::IDS.len(),
        "plus INV-LINEARIZABLE and the progress properties"
    );
}
