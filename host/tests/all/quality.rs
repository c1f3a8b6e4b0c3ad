//! The features with the real model on the fixed examples: greedy decoding is deterministic, so
//! these assert facts (not wording) that a useful answer must keep.

use crate::common::*;

fn contains_all(text: &str, facts: &[&str]) -> Vec<String> {
    let lower = text.to_lowercase();
    facts.iter().filter(|fact| !lower.contains(&fact.to_lowercase())).map(|f| f.to_string()).collect()
}

#[test]
fn the_picnic_summary_names_the_key_facts() {
    let (sandbox, _) = sandbox_with(&release_policy(), model());
    let summary = sandbox.handle(&example("picnic-chat.json")).unwrap().text().clone();
    println!("{summary}");
    let missing = contains_all(&summary, &["saturday", "11", "riverside park"]);
    assert!(missing.is_empty(), "the summary misses {missing:?}:\n{summary}");
    let lines = summary.lines().count();
    assert!((1..=6).contains(&lines), "a few points, not {lines}:\n{summary}");
}

#[test]
fn a_formal_rewrite_keeps_names_and_numbers() {
    let (sandbox, _) = sandbox_with(&release_policy(), model());
    let rewritten = sandbox.handle(&example("draft-formal.json")).unwrap().text().clone();
    println!("{rewritten}");
    let missing = contains_all(&rewritten, &["Dana", "3", "Friday", "report"]);
    assert!(missing.is_empty(), "the rewrite loses {missing:?}:\n{rewritten}");
}

#[test]
fn a_friendly_rewrite_keeps_the_amount_and_date() {
    let (sandbox, _) = sandbox_with(&release_policy(), model());
    let rewritten = sandbox.handle(&example("draft-friendly.json")).unwrap().text().clone();
    println!("{rewritten}");
    let missing = contains_all(&rewritten, &["850", "March 1"]);
    assert!(missing.is_empty(), "the rewrite loses {missing:?}:\n{rewritten}");
}

#[test]
fn the_picnic_catch_up_gives_the_new_plan_and_the_question_for_the_reader() {
    let (sandbox, _) = sandbox_with(&release_policy(), model());
    let request = example("catch-up.json");
    let points = sandbox.handle(&request).unwrap().text().clone();
    println!("{points}");
    let missing = contains_all(&points, &["sunday", "1pm", "asks you", "ball"]);
    assert!(missing.is_empty(), "the catch-up misses {missing:?}:\n{points}");
    let lines: Vec<&str> = points.lines().collect();
    assert!((1..=5).contains(&lines.len()), "a few points, not {}:\n{points}", lines.len());
    // Each point is one message's, named by its author (nothing comes from nowhere), and none is
    // from before the reader's last message (Sam's).
    let authors = ["Maya", "Tom", "Priya"];
    for line in &lines {
        assert!(authors.iter().any(|a| line.starts_with(&format!("- {a}"))), "an unattributed point: {line}");
        assert!(!line.contains("11am at Riverside"), "the replaced plan: {line}");
    }
}
