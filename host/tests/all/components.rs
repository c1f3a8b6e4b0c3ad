//! Each released component, run through the host runtime with scripted inference: what it makes
//! of the model's answers.

use crate::common::*;
use pp_host::inference::ScriptedInference;
use pp_host::sandbox::SandboxError;
use std::sync::Arc;

#[test]
fn summarize_reports_each_chosen_message_and_quotes_the_reports_that_add_anything() {
    // The picnic's six messages with a plan, an offer or a fallback ("Yes! Saturday works" adds
    // nothing): one report each, in chat order; the second Priya report invents a name.
    let reports = [
        "Maya suggests a picnic this Saturday.",
        "Maya says to meet at 11am at Riverside Park.",
        "Priya will bring sandwiches and cake.",
        "Tom will bring the frisbee and a blanket.",
        "Maya will bring a cake.",
        "Lena will host if it rains.",
    ];
    let (sandbox, _) = sandbox_with(&release_policy(), scripted(&reports));
    let response = sandbox.handle(&example("picnic-chat.json")).unwrap();
    assert_eq!(
        response.text(),
        "- Maya suggests a picnic this Saturday.\n\
         - Maya says to meet at 11am at Riverside Park.\n\
         - Priya: I'll bring sandwiches and lemonade.\n\
         - Tom will bring the frisbee and a blanket.\n\
         - Maya will bring a cake.\n\
         - Priya: If it rains we can go to Maya's place instead."
    );
    assert_eq!(response.model_calls, 6, "one short call per point");
}

#[test]
fn summarize_leaves_out_a_plan_that_a_later_message_changed() {
    let chat = [
        ("Aisha", "Dinner on Friday at 7pm at Bella Napoli?"),
        ("Leo", "Friday is tricky for me, sorry."),
        ("Aisha", "Saturday at 8pm at Bella Napoli works then. I'll book a table for five."),
        ("Kenji", "ok"),
    ];
    let (sandbox, _) = sandbox_with(&release_policy(), scripted(&["(no report)"]));
    let response = sandbox.handle(&summarize(&chat)).unwrap();
    let text = response.text();
    assert!(text.contains("Saturday at 8pm") && !text.contains("7pm"), "{text}");
    assert!(!text.contains("Kenji"), "filler is no point: {text}");
}

#[test]
fn summarize_answers_plainly_when_no_message_says_anything() {
    let (sandbox, _) = sandbox_with(&release_policy(), scripted(&["- invented"]));
    let response = sandbox.handle(&summarize(&[("Ana", "ok"), ("Ben", "🎉🎉"), ("Cem", "lol")])).unwrap();
    assert_eq!(response.text(), "Nothing to summarize: the chat has only short replies or emoji.");
    assert_eq!(response.model_calls, 0);
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
    let wrapped =
        "Rewritten message: \"Dear Dana, could you send me the report by Friday for the 3pm meeting?\"";
    let (sandbox, _) = sandbox_with(&release_policy(), scripted(&[wrapped]));
    let response = sandbox.handle(&example("draft-formal.json")).unwrap();
    assert_eq!(response.text(), "Dear Dana, could you send me the report by Friday for the 3pm meeting?");
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
        // The draft with its text-speak spelled out.
        assert!(first.contains("See you at 5"), "{style:?}: the prompt lacks the draft");
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
    let error = sandbox.handle(&example("draft-friendly.json")).unwrap_err();
    assert!(matches!(error, SandboxError::ModelError(_)), "{error:?}");
}

#[test]
fn a_draft_given_back_unchanged_is_an_error_not_a_rewrite() {
    let draft = "The rent of 850 euros is due on March 1. Please pay it on time.";
    let (sandbox, _) = sandbox_with(&release_policy(), scripted(&[draft]));
    let error = sandbox.handle(&rewrite(draft, "friendly")).unwrap_err();
    let SandboxError::ModelError(why) = error else { panic!("{error:?}") };
    assert!(why.contains("unchanged"), "{why}");
}

#[test]
fn a_formal_rewrite_the_model_misses_falls_back_to_the_draft_spelled_out() {
    let (sandbox, _) = sandbox_with(&release_policy(), scripted(&["   ", "I'm sorry, I can't."]));
    let response = sandbox.handle(&example("draft-formal.json")).unwrap();
    assert_eq!(
        response.text(),
        "Hello, can you send me the report by Friday? Need it for the meeting with Dana at 3pm. Thank you"
    );
    assert_eq!(response.model_calls, 8, "every way of asking was tried first");
}
