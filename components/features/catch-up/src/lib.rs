//! Catch-up: for a reader coming back to a busy chat, what happened since their own last message,
//! in at most five short points (questions put to them, changed plans, decisions, facts).
//!
//! The messages that matter are chosen without the model (`pick`): asked to choose, a 135M model
//! invents points. The model then reports each chosen message in one short third-person sentence,
//! and a report is kept only if it says nothing the message does not (`report`); otherwise the
//! point is the message itself, attributed. So every point can be traced to one message.

#![forbid(unsafe_code)]

mod pick;
mod report;

use pick::{one_line, pick, since_last, Pick, Reason};
use pp_guest::{
    log_event, required, ChatMessage, Descriptor, FeatureError, Guest, Lines, Options, Request, Usage,
};

struct CatchUp;

pp_guest::export!(CatchUp);

const NOTHING_NEW: &str = "Nothing new since your last message.";

impl Guest for CatchUp {
    fn describe() -> Descriptor {
        Descriptor::new(
            "catch-up",
            "What happened in a chat since the reader's last message: questions for them, changed plans, decisions",
        )
        .messages_part("chat", "the chat's messages, oldest first", true)
        .text_part("reader", "the reader's name, as an author in the chat", true)
        .output("catch-up", "the points, one per line")
        .event("request-started", &["input-messages"])
        .event("request-finished", &["prompt-tokens", "completion-tokens"])
    }

    fn handle(request: Request) -> Result<(), FeatureError> {
        let messages = required(request.messages("chat"), "chat")?;
        let reader = required(request.text("reader"), "reader")?;
        let mut points = Lines::begin("catch-up")?;
        catch_up(messages, reader, &request.options, &mut |point| points.line(point))
    }
}

/// Writes each point as soon as it is made (a streaming device sees the first before the model
/// phrases the next).
fn catch_up(
    messages: &[ChatMessage],
    reader: &str,
    options: &Options,
    write: &mut dyn FnMut(&str) -> Result<(), FeatureError>,
) -> Result<(), FeatureError> {
    if messages.is_empty() {
        return Err(FeatureError::InvalidInput("the chat has no messages".into()));
    }
    let reader = one_line(reader);
    if reader.is_empty() {
        return Err(FeatureError::InvalidInput("the reader's name is empty".into()));
    }
    let new = since_last(messages, &reader);
    log_event("request-started", &[("input-messages", new.len())]);
    let picks = pick(new, &reader);
    if picks.is_empty() {
        return write(NOTHING_NEW);
    }
    let mut usage = Usage::default();
    for pick in &picks {
        let report = ask_report(&mut usage, pick, options)?;
        write(&format!("- {}", report::point(pick, report.as_deref(), &reader)))?;
    }
    log_event(
        "request-finished",
        &[
            ("prompt-tokens", usage.prompt_tokens as usize),
            ("completion-tokens", usage.completion_tokens as usize),
        ],
    );
    Ok(())
}

/// The model's report of one message, or nothing when the point will be the message itself
/// (a question for the reader is always quoted).
fn ask_report(usage: &mut Usage, pick: &Pick, options: &Options) -> Result<Option<String>, FeatureError> {
    if pick.reason == Reason::AsksReader {
        return Ok(None);
    }
    pp_guest::report::ask(usage, pick.message, options)
}
