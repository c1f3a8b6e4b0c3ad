//! Each released component, run through the host runtime with scripted inference: what it makes
//! of the model's answers.

use crate::common::*;
use pp_host::inference::ScriptedInference;
use pp_host::sandbox::SandboxError;
use std::sync::Arc;

#[test]
fn summarize_keeps_the_factual_answer_and_drops_filler() {
    let vague = "- Everyone had a great time chatting.";
    let factual =
        "* The picnic is on Saturday at 11am at Riverside Park\n2. Plans are fun\n- Rain: Maya's place";
    let (sandbox, _) = sandbox_with(&release_policy(), scripted(&[vague, factual]));
    let response = sandbox.handle(&example("picnic-chat.json")).unwrap();
    assert_eq!(
        response.text(),
        "- The picnic is on Saturday at 11am at Riverside Park\n- Rain: Maya's place"
    );
    assert_eq!(response.model_calls, 2, "one way of asking, then a second after a vague answer");
}

#[test]
fn summarize_turns_prose_into_bullets() {
    let prose = "This chat is lovely. They meet on Saturday at 11.30 at Riverside Park! Maya brings cake.";
    let (sandbox, _) = sandbox_with(&release_policy(), scripted(&[prose]));
    let response = sandbox.handle(&example("picnic-chat.json")).unwrap();
    assert_eq!(response.text(), "- They meet on Saturday at 11.30 at Riverside Park!\n- Maya brings cake.");
}

#[test]
fn summarize_keeps_at_most_five_bullets() {
    let answer = (1..=9).map(|i| format!("- point {i} about Saturday")).collect::<Vec<_>>().join("\n");
    let (sandbox, _) = sandbox_with(&release_policy(), scripted(&[&answer]));
    let response = sandbox.handle(&example("picnic-chat.json")).unwrap();
    assert_eq!(response.text().lines().count(), 5);
}

#[test]
fn rewrite_keeps_the_first_answer_that_keeps_every_fact() {
    let off_task = "I'm sorry, as an AI assistant I cannot send reports.";
    let good = "Could you please send me the report by Friday? I need it for the meeting with Dana at 3pm.";
    let (sandbox, _) = sandbox_with(&release_policy(), scripted(&[off_task, good, "never asked"]));
    let response = sandbox.handle(&example("draft-formal.json")).unwrap();
    assert_eq!(response.text(), good);
    assert_eq!(response.model_calls, 2);
}

#[test]
fn rewrite_strips_the_wrapping_a_small_model_adds() {
    let (sandbox, _) =
        sandbox_with(&release_policy(), scripted(&["Rewritten message: \"Dear Dana, please send it.\""]));
    let response = sandbox.handle(&example("draft-formal.json")).unwrap();
    assert_eq!(response.text(), "Dear Dana, please send it.");
    let introduced = "Here is a formal version:\n\"Please send me the report by Friday for the meeting with Dana at 3pm.\"";
    let (sandbox, _) = sandbox_with(&release_policy(), scripted(&[introduced]));
    let response = sandbox.handle(&example("draft-formal.json")).unwrap();
    assert_eq!(response.text(), "Please send me the report by Friday for the meeting with Dana at 3pm.");
}

#[test]
fn rewrite_serves_every_style() {
    // Each style's own instruction, as the component words it: it must reach the model.
    let styles = [
        ("formal", "professional and formal"),
        ("friendly", "friendly and approachable"),
        ("concise", "more concise"),
        ("fix-grammar", "grammar and spelling"),
    ];
    for (style, instruction) in styles {
        let model = Arc::new(ScriptedInference::new(vec!["see you at 5".into()], 2048));
        let (sandbox, _) = sandbox_with(&release_policy(), model.clone());
        let response = sandbox.handle(&rewrite("see u at 5", style)).unwrap();
        assert_eq!(response.text(), "see you at 5", "{style:?}");
        let prompts = model.prompts();
        assert!(!prompts.is_empty(), "{style:?}: the model was asked nothing");
        let first: String =
            prompts[0].iter().map(|turn| turn.content.as_str()).collect::<Vec<_>>().join("\n");
        assert!(first.contains(instruction), "{style:?}: the prompt lacks {instruction:?}: {first}");
        assert!(first.contains("see u at 5"), "{style:?}: the prompt lacks the draft");
        for (other, other_instruction) in styles {
            if other != style {
                assert!(!first.contains(other_instruction), "{style:?} was asked for {other:?}");
            }
        }
    }
}

#[test]
fn an_empty_model_answer_is_a_model_error() {
    let (sandbox, _) = sandbox_with(&release_policy(), scripted(&["   "]));
    let error = sandbox.handle(&example("draft-formal.json")).unwrap_err();
    assert!(matches!(error, SandboxError::ModelError(_)), "{error:?}");
}
