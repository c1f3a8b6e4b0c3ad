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
    log_event, params, required, ChatMessage, Descriptor, FeatureError, Guest, Lines, Options, Request, Role,
    Turn, Usage,
};

struct CatchUp;

pp_guest::export!(CatchUp);

/// Tokens the model may write for one report.
const REPORT_TOKENS: u32 = 48;
/// Bytes of a message given to the model (a longer one is quoted, cut, instead).
const MAX_REPORTED_BYTES: usize = 400;

const NOTHING_NEW: &str = "Nothing new since your last message.";

const SYSTEM: &str = "You report chat messages in the third person, in one short sentence.";

/// Worked examples as earlier exchanges: the 135M model follows a shown pattern far better than
/// an instruction. Their names and facts are in no chat, so a copied example fails the check.
const EXAMPLES: &[(&str, &str)] = &[
    (
        "Message from Lena: \"I booked the table for 8, see you at the Blue Cafe.\"",
        "Lena booked the table for 8 at the Blue Cafe.",
    ),
    ("Message from Omar: \"Can we start at 9 instead?\"", "Omar asks to start at 9 instead."),
];

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
/// (a question for the reader, a message without author, a long one).
fn ask_report(usage: &mut Usage, pick: &Pick, options: &Options) -> Result<Option<String>, FeatureError> {
    let author = one_line(&pick.message.author);
    let text = one_line(&pick.message.text);
    if pick.reason == Reason::AsksReader || author.is_empty() || text.len() > MAX_REPORTED_BYTES {
        return Ok(None);
    }
    let mut turns = vec![Turn { role: Role::System, content: SYSTEM.into() }];
    for (message, report) in EXAMPLES {
        turns.push(Turn { role: Role::User, content: message.to_string() });
        turns.push(Turn { role: Role::Assistant, content: report.to_string() });
    }
    turns.push(Turn { role: Role::User, content: format!("Message from {author}: \"{text}\"") });
    let max_tokens = options.max_output_tokens.unwrap_or(REPORT_TOKENS).clamp(1, REPORT_TOKENS);
    let completion = usage.generate(&turns, &params(options, max_tokens, &["\n"]))?;
    Ok(Some(completion.text))
}
