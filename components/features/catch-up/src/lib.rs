//! Catch-up: for a reader coming back to a busy chat, what happened since their own last message,
//! in at most five short points (decisions, changed plans, questions for them).
//!
//! Only the messages after the reader's last one are read; the most recent of them that fit are
//! split into chunks of whole lines, each chunk is turned into points, and the points of several
//! chunks are combined into one short list (as summarize does: small models do best on short
//! inputs).
//!
//! NOT RELEASED (no entry in policies/release.toml): with the default 135M model its points are
//! often invented ("Sam said they'd bring a blanket…" on `example.json`), which the fact checker
//! lets through when every name and day in them appears in the chat. Try it with
//! `pp-host-dev component test target/components/catch-up.wasm --input components/features/catch-up/example.json`;
//! release it once its answers are ones a user would trust (issue 15).

#![forbid(unsafe_code)]

mod logic;

use logic::{chat_line, cut, fallback, invents, most_recent, pack, points, render, since_last, MAX_POINTS};
use pp_guest::facts::{self, Facts};
use pp_guest::{
    answer, inference, log_event, params, prompt, required, text_tokens, ChatMessage, Descriptor,
    FeatureError, Guest, Options, Request, Usage,
};

struct CatchUp;

pp_guest::export!(CatchUp);

/// Chat tokens given to the model at once.
const CHUNK_TOKENS: u32 = 400;
/// Chunks read at most: older messages beyond them are left out (newest first).
const MAX_CHUNKS: u32 = 3;
/// Room for the instructions and the chat template around a chunk.
const PROMPT_OVERHEAD_TOKENS: u32 = 128;
/// Tokens the model may write per call.
const POINTS_TOKENS: u32 = 128;
/// Bytes of one message at most (a token is at least one byte, so a line fits a chunk).
const MAX_LINE_BYTES: usize = 360;

const NOTHING_NEW: &str = "Nothing new since your last message.";

/// The system turn: the task itself is in the user turn, after the chat (put before it, the 135M
/// model tends to continue the chat's lines).
const ASSISTANT: &str = "You are a helpful assistant.";

impl Guest for CatchUp {
    fn describe() -> Descriptor {
        Descriptor::new(
            "catch-up",
            "What happened in a chat since the reader's last message: decisions, changes and questions for them",
        )
        .messages_part("chat", "the chat's messages, oldest first", true)
        .text_part("reader", "the reader's name, as an author in the chat", true)
        .output("catch-up", "the points, one per line")
        .event("request-started", &["input-messages", "input-chunks"])
        .event("request-finished", &["prompt-tokens", "completion-tokens"])
    }

    fn handle(request: Request) -> Result<(), FeatureError> {
        let messages = required(request.messages("chat"), "chat")?;
        let reader = required(request.text("reader"), "reader")?;
        let text = catch_up(messages, reader, &request.options)?;
        answer("catch-up", &text)?;
        Ok(())
    }
}

fn catch_up(messages: &[ChatMessage], reader: &str, options: &Options) -> Result<String, FeatureError> {
    if messages.is_empty() {
        return Err(FeatureError::InvalidInput("the chat has no messages".into()));
    }
    let reader = logic::one_line(reader);
    if reader.is_empty() {
        return Err(FeatureError::InvalidInput("the reader's name is empty".into()));
    }
    let new = since_last(messages, &reader);
    let lines: Vec<String> =
        new.iter().filter_map(chat_line).map(|line| cut(&line, MAX_LINE_BYTES)).collect();
    if lines.is_empty() {
        log_event("request-started", &[("input-messages", 0), ("input-chunks", 0)]);
        return Ok(NOTHING_NEW.into());
    }
    let budget = chunk_budget()?;
    let recent = most_recent(&lines, budget * MAX_CHUNKS, text_tokens);
    let chunks = pack(recent, budget, text_tokens);
    log_event("request-started", &[("input-messages", recent.len()), ("input-chunks", chunks.len())]);

    // Facts the answer may state: the new messages' and the reader's name.
    let source = Facts::of(&format!("For {reader}:\n{}", recent.join("\n")));
    let mut usage = Usage::default();
    let final_tokens = options.max_output_tokens.unwrap_or(POINTS_TOKENS).max(1);
    let single = chunks.len() == 1;
    let mut notes = Vec::new();
    for chunk in &chunks {
        let max_tokens = if single { final_tokens } else { POINTS_TOKENS };
        let ways = chunk_prompts(&reader);
        notes.extend(ask(&mut usage, &ways, chunk, &source, new, options, max_tokens)?);
    }
    if !single && notes.len() > MAX_POINTS {
        // The notes are in chat order, so later ones (the latest plans) come last.
        let joined = notes.iter().map(|n| format!("- {n}")).collect::<Vec<_>>().join("\n");
        let ways = combine_prompts(&reader);
        let combined = ask(&mut usage, &ways, &joined, &source, new, options, final_tokens)?;
        if !combined.is_empty() {
            notes = combined;
        } else {
            notes = notes.split_off(notes.len() - MAX_POINTS);
        }
    }
    notes.truncate(MAX_POINTS);
    if notes.is_empty() {
        // Nothing usable (the small model went on with the chat): the messages that ask the
        // reader something, attributed, rather than nothing or made-up points.
        notes = fallback(new, &reader);
    }
    log_event(
        "request-finished",
        &[
            ("prompt-tokens", usage.prompt_tokens as usize),
            ("completion-tokens", usage.completion_tokens as usize),
        ],
    );
    Ok(render(&notes))
}

/// Ways of asking for a chunk's points, best first; a way may set its own system turn before
/// `|SYS|`. The 135M model often goes on with the chat instead (such lines are dropped), so
/// several are tried.
fn chunk_prompts(reader: &str) -> Vec<String> {
    vec![
        format!(
            "You summarize chats for {reader}, who was away. You never repeat the messages.|SYS|\
             Tell {reader} in 3 short bullet points, each starting with \"- \", what the others \
             decided (only the newest plan) and what they ask {reader}."
        ),
        format!("{{chat}}\n\nWhat is the new plan, and what is {reader} asked? Answer in 2 short sentences."),
        "Summarize the plan of this group chat in 3 short bullet points: the day, the time, the \
         place, and who brings what."
            .to_string(),
    ]
}

fn combine_prompts(reader: &str) -> Vec<String> {
    vec![
        format!(
            "Combine these notes about one chat into at most 5 short bullet points for {reader}, \
             each starting with \"- \". When a plan changed, keep only the later one. Use only facts \
             from the notes."
        ),
        "Summarize these notes in 3 short bullet points: what is planned, when and where, and who \
         does what."
            .to_string(),
    ]
}

/// Asks each way in turn and keeps the points that best keep the text's facts (none invented:
/// `points` drops such lines), stopping early at a good answer.
fn ask(
    usage: &mut Usage,
    ways: &[String],
    text: &str,
    source: &Facts,
    chat: &[ChatMessage],
    options: &Options,
    max_tokens: u32,
) -> Result<Vec<String>, FeatureError> {
    let here = Facts::of(text);
    let mut best: Option<(usize, Vec<String>)> = None;
    for instructions in ways {
        let (system, instructions) = match instructions.split_once("|SYS|") {
            Some((system, rest)) => (system, rest),
            None => (ASSISTANT, instructions.as_str()),
        };
        let turns = prompt(system, &fill(instructions, text));
        let completion = usage.generate(&turns, &params(options, max_tokens, &[]))?;
        let items = points(&completion.text, source, chat);
        debug_assert!(items.iter().all(|item| !invents(source, item)));
        let penalty = if items.is_empty() { usize::MAX } else { facts::penalty(&here, &items.join("\n")) };
        if best.as_ref().is_none_or(|(lowest, _)| penalty < *lowest) {
            best = Some((penalty, items));
        }
        // Good enough: on task and keeps some of the facts (a summary drops many).
        if penalty <= 2 * (here.numbers.len() + here.names.len()) {
            break;
        }
    }
    Ok(best.map(|(_, items)| items).unwrap_or_default())
}

/// The user turn: `way` with the text in place of `{chat}`, or the text and then `way`.
fn fill(way: &str, text: &str) -> String {
    if way.contains("{chat}") {
        way.replace("{chat}", text)
    } else {
        format!("{text}\n\n{way}")
    }
}

/// Chat tokens one model call can take, leaving room for instructions and the answer.
fn chunk_budget() -> Result<u32, FeatureError> {
    let context = inference::context_tokens();
    let budget = context.saturating_sub(PROMPT_OVERHEAD_TOKENS + POINTS_TOKENS).min(CHUNK_TOKENS);
    if budget < 32 {
        return Err(FeatureError::Internal(format!(
            "the model's context ({context} tokens) is too small for a catch-up"
        )));
    }
    Ok(budget)
}
