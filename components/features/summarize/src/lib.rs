//! Summarize: a chat in a few short points, the plan as it stands — its latest day, time and
//! place, who does what — and the facts a reader needs.
//!
//! The messages that carry those facts are chosen without the model (`select`): asked to
//! summarize, a 135M model drops facts, keeps plans that a later message changed, and invents
//! people and numbers. The model then reports each chosen message in one short third-person
//! sentence, kept only if it says nothing the message does not; otherwise the point is the
//! message itself, attributed. So every point can be traced to one message, and a chat of any
//! length costs at most a few short model calls.

#![forbid(unsafe_code)]

mod select;

use pp_guest::chunks::chat_line;
use pp_guest::{
    log_event, report, required, ChatMessage, Descriptor, FeatureError, Guest, Lines, Options, Request, Usage,
};

struct Summarize;

pp_guest::export!(Summarize);

/// The answer when no message says anything to summarize (only filler or emoji).
const NOTHING_TO_SUMMARIZE: &str = "Nothing to summarize: the chat has only short replies or emoji.";

impl Guest for Summarize {
    fn describe() -> Descriptor {
        Descriptor::new(
            "summarize",
            "Summarizes a chat in a few points: the plan's latest day, time and place, and who does what",
        )
        .messages_part("chat", "the chat's messages, oldest first", true)
        .output("summary", "the points, one per line")
        .event("request-started", &["input-messages"])
        .event("request-finished", &["prompt-tokens", "completion-tokens", "model-calls"])
    }

    fn handle(request: Request) -> Result<(), FeatureError> {
        let messages = required(request.messages("chat"), "chat")?;
        let mut summary = Lines::begin("summary")?;
        summarize(messages, &request.options, &mut |point| summary.line(point))
    }
}

/// Writes each point as soon as it is made (a streaming device sees the first before the model
/// phrases the next).
fn summarize(
    messages: &[ChatMessage],
    options: &Options,
    write: &mut dyn FnMut(&str) -> Result<(), FeatureError>,
) -> Result<(), FeatureError> {
    if messages.is_empty() {
        return Err(FeatureError::InvalidInput("the chat has no messages".into()));
    }
    if messages.iter().all(|m| chat_line(m).is_none()) {
        return Err(FeatureError::InvalidInput("every message of the chat is empty".into()));
    }
    log_event("request-started", &[("input-messages", messages.len())]);
    let chosen = select::select(messages);
    if chosen.is_empty() {
        return write(NOTHING_TO_SUMMARIZE);
    }
    let mut usage = Usage::default();
    for message in chosen {
        let said = report::ask(&mut usage, message, options)?;
        write(&format!("- {}", report::point(message, said.as_deref(), "")))?;
    }
    log_event(
        "request-finished",
        &[
            ("prompt-tokens", usage.prompt_tokens as usize),
            ("completion-tokens", usage.completion_tokens as usize),
            ("model-calls", usage.model_calls as usize),
        ],
    );
    Ok(())
}
