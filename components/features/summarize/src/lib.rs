//! Summarize: turns a chat into a few short bullets.
//!
//! Chats longer than the model's context are split into chunks of whole lines, each chunk is
//! summarized into notes, and the notes are combined (again in chunks, if need be) into one
//! short list. Small models summarize short inputs best, so chunks stay well below the context.

#![forbid(unsafe_code)]

use pp_guest::chunks::{chat_line, pack};
use pp_guest::facts::{self, Facts};
use pp_guest::{
    inference, log_event, params, prompt, required, text_tokens, ChatMessage, Descriptor, FeatureError,
    Guest, Lines, Options, Request, Usage,
};

struct Summarize;

pp_guest::export!(Summarize);

/// Most chat tokens given to the model at once.
const CHUNK_TOKENS: u32 = 384;
/// Room for the instructions and the chat template around a chunk.
const PROMPT_OVERHEAD_TOKENS: u32 = 96;
/// Tokens the model may write per chunk.
const NOTES_TOKENS: u32 = 128;
/// Bullets in the final answer at most.
const MAX_BULLETS: usize = 5;
/// Rounds of combining before the notes are cut instead (each round shrinks them, so this is
/// a guard against a model that does not).
const MAX_COMBINE_ROUNDS: usize = 4;

/// Ways of asking for a chunk's summary, best first (a small model follows some better than
/// others, depending on the chat). Each comes after the chat: put before it, the 135M model
/// tends to continue the chat's lines instead of summarizing them.
const SUMMARIZE_CHUNK: &[&str] = &[
    "Summarize the plan of this group chat in 3 short bullet points: the day, the time, the \
     place, and who brings what.",
    "In 3 short bullet points: what did they plan, for which day and time, and where?",
    "Summarize this group chat in 3 short bullet points: what is planned, when and where, and who \
     brings what.",
];
const COMBINE_NOTES: &[&str] = &[
    "Combine these notes about one group chat into at most 5 short bullet points, each starting \
     with \"- \". Keep every day, time, place and name. Use only facts from the notes.",
    "Summarize these notes in 3 short bullet points: what is planned, when and where, and who \
     does what.",
];
/// The system turn: the task itself is in the user turn, after the text.
const ASSISTANT: &str = "You are a helpful assistant.";

impl Guest for Summarize {
    fn describe() -> Descriptor {
        Descriptor::new(
            "summarize",
            "Summarizes a chat in a few points: the plan's latest day, time and place, and who does what",
        )
        .messages_part("chat", "the chat's messages, oldest first", true)
        .output("summary", "the points, one per line")
        .event("request-started", &["input-messages", "input-chunks"])
        .event("chunk-summarized", &["completion-tokens"])
        .event("request-finished", &["prompt-tokens", "completion-tokens"])
    }

    fn handle(request: Request) -> Result<(), FeatureError> {
        let messages = required(request.messages("chat"), "chat")?;
        let (notes, _usage) = summarize(messages, &request.options)?;
        // A line per point, each sent as soon as it is written (the checks are done by now).
        let mut summary = Lines::begin("summary")?;
        for note in &notes {
            summary.line(&format!("- {note}"))?;
        }
        Ok(())
    }
}

/// The summary's points and the model's usage.
fn summarize(messages: &[ChatMessage], options: &Options) -> Result<(Vec<String>, Usage), FeatureError> {
    if messages.is_empty() {
        return Err(FeatureError::InvalidInput("the chat has no messages".into()));
    }
    let lines: Vec<String> = messages.iter().filter_map(chat_line).collect();
    if lines.is_empty() {
        return Err(FeatureError::InvalidInput("every message of the chat is empty".into()));
    }
    let budget = chunk_budget()?;
    let chunks = pack(&lines, budget, text_tokens);
    log_event("request-started", &[("input-messages", messages.len()), ("input-chunks", chunks.len())]);

    let mut usage = Usage::default();
    let final_tokens = options.max_output_tokens.unwrap_or(NOTES_TOKENS).max(1);
    let single = chunks.len() == 1;
    let mut notes = Vec::new();
    for chunk in &chunks {
        let max_tokens = if single { final_tokens } else { NOTES_TOKENS };
        notes.extend(ask(&mut usage, SUMMARIZE_CHUNK, chunk, options, max_tokens)?);
        log_event("chunk-summarized", &[("completion-tokens", usage.completion_tokens as usize)]);
    }
    if !single {
        notes = combine(&mut usage, notes, budget, options, final_tokens)?;
    }
    notes.truncate(MAX_BULLETS);
    if notes.is_empty() {
        return Err(FeatureError::ModelError("the model returned no summary".into()));
    }
    log_event(
        "request-finished",
        &[
            ("prompt-tokens", usage.prompt_tokens as usize),
            ("completion-tokens", usage.completion_tokens as usize),
        ],
    );
    Ok((notes, usage))
}

/// Merges notes from several chunks, in rounds, until one model call sees them all.
fn combine(
    usage: &mut Usage,
    mut notes: Vec<String>,
    budget: u32,
    options: &Options,
    final_tokens: u32,
) -> Result<Vec<String>, FeatureError> {
    for _ in 0..MAX_COMBINE_ROUNDS {
        let chunks = pack(&notes, budget, text_tokens);
        let last = chunks.len() == 1;
        let max_tokens = if last { final_tokens } else { NOTES_TOKENS };
        let mut merged = Vec::new();
        for chunk in &chunks {
            merged.extend(ask(usage, COMBINE_NOTES, chunk, options, max_tokens)?);
        }
        notes = merged;
        if last {
            break;
        }
    }
    Ok(notes)
}

/// Asks each way in turn and keeps the answer that best keeps the text's facts and invents
/// none, stopping early at a good one; returns its bullets.
fn ask(
    usage: &mut Usage,
    ways: &[&str],
    text: &str,
    options: &Options,
    max_tokens: u32,
) -> Result<Vec<String>, FeatureError> {
    let source = Facts::of(text);
    let mut best: Option<(usize, Vec<String>)> = None;
    for instructions in ways {
        let turns = prompt(ASSISTANT, &format!("{text}\n\n{instructions}"));
        let completion = usage.generate(&turns, &params(options, max_tokens, &[]))?;
        let items = bullets(&completion.text, &source);
        let penalty = facts::penalty(&source, &items.join("\n"));
        if best.as_ref().is_none_or(|(lowest, _)| penalty < *lowest) {
            best = Some((penalty, items));
        }
        // Good enough: keeps most facts (a summary may drop some) and is on task.
        if penalty <= source.numbers.len() + source.names.len() {
            break;
        }
    }
    Ok(best.map(|(_, items)| items).unwrap_or_default())
}

/// Chat tokens one model call can take, leaving room for instructions and notes.
fn chunk_budget() -> Result<u32, FeatureError> {
    let context = inference::context_tokens();
    let budget = context.saturating_sub(PROMPT_OVERHEAD_TOKENS + NOTES_TOKENS).min(CHUNK_TOKENS);
    if budget < 32 {
        return Err(FeatureError::Internal(format!(
            "the model's context ({context} tokens) is too small to summarize"
        )));
    }
    Ok(budget)
}

/// The points of a model's answer: its bullet lines, or its sentences when it wrote prose;
/// without markers, and only those that mention a fact of the source (a small model pads its
/// answers with friendly filler), unless none does.
fn bullets(text: &str, source: &Facts) -> Vec<String> {
    // A heading ("The day:") introduces points and states none.
    let lines: Vec<&str> =
        text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.ends_with(':')).collect();
    let is_bullet =
        |line: &&&str| line.starts_with(['-', '*', '•']) || line.starts_with(|c: char| c.is_ascii_digit());
    let items: Vec<String> = if lines.iter().filter(is_bullet).count() >= lines.len().div_ceil(2) {
        lines.iter().map(|line| strip_marker(line)).collect()
    } else {
        sentences(&lines.join(" ")).iter().map(|sentence| strip_marker(sentence)).collect()
    };
    let items: Vec<String> = items.into_iter().filter(|item| !item.is_empty()).collect();
    let factual: Vec<String> = items.iter().filter(|item| source.mentioned_in(item) > 0).cloned().collect();
    if factual.is_empty() {
        items.into_iter().take(1).collect()
    } else {
        factual
    }
}

/// The line without its list marker(s): "- ", "* ", "2. ", "1) ", or a nested "- - " (a number
/// that starts the text itself, as in "11am", stays).
fn strip_marker(line: &str) -> String {
    let mut rest = line.trim();
    loop {
        let next = if let Some(after) = rest.strip_prefix(['-', '*', '•']) {
            after
        } else {
            let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            match rest[digits..].strip_prefix(['.', ')']) {
                Some(after) if digits > 0 && after.starts_with(char::is_whitespace) => after,
                _ => return rest.to_string(),
            }
        };
        rest = next.trim_start();
    }
}

/// Splits prose after `.`, `!` or `?` followed by a space (not inside "11.30").
fn sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        current.push(c);
        if matches!(c, '.' | '!' | '?') && chars.peek().is_none_or(|next| next.is_whitespace()) {
            out.push(current.trim().to_string());
            current.clear();
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_string());
    }
    out
}
