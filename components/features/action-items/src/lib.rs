//! Action items: from a chat, the tasks people took on or were asked to do, one per line as
//! "- Name: task (by when)", or "No action items.".
//!
//! The chat is packed into chunks well below the model's context; the model lists each chunk's
//! items, then is asked about each person who took something on and is missing from the list
//! ("What did Tom agree to do?", at most a few questions per request). Every answer is checked against the chat (its people, its
//! words, its names and numbers), and the items of all chunks are merged, the later one winning.

#![forbid(unsafe_code)]

mod items;

use items::{Chat, Item};
use pp_guest::chunks;
use pp_guest::{
    answer, inference, log_event, params, prompt, required, text_tokens, ChatMessage, Descriptor,
    FeatureError, Guest, Options, Request, Usage,
};

struct ActionItems;

pp_guest::export!(ActionItems);

/// Most chat tokens given to the model at once (a small model reads short inputs best).
const CHUNK_TOKENS: u32 = 448;
/// Room for the instructions and the chat template around a chunk.
const PROMPT_OVERHEAD_TOKENS: u32 = 128;
/// Tokens the model may write for one chunk's list.
const LIST_TOKENS: u32 = 160;
/// Tokens the model may write about one person.
const PERSON_TOKENS: u32 = 40;
/// Questions about single people in one request at most (each is a model call).
const MAX_PERSON_QUESTIONS: usize = 6;

/// Ways of asking for a chunk's items, best first; the chat comes before the question (put after
/// it, the small model tends to continue the chat), and quoted (else it writes the next message).
const LIST_ITEMS: &[(&str, &str)] = &[
    (
        "You list action items from chats: for each task someone agreed to do, one line \
         \"- Name: task (by when)\".",
        "Chat:\n\"\"\"\n{chat}\n\"\"\"\n\nWrite the action items of this chat, one per line as \
         \"- Name: task (by when)\". Leave out \"(by when)\" if no day or time was said.",
    ),
    (
        "You are a helpful assistant.",
        "{chat}\n\nWho agreed to do what in this chat? Answer with a list like:\n- Name: task",
    ),
];
const ASSISTANT: &str = "You are a helpful assistant.";

impl Guest for ActionItems {
    fn describe() -> Descriptor {
        Descriptor::new("action-items", "Lists who agreed to do what, and by when, from a chat")
            .messages_part("chat", "the chat's messages, oldest first", true)
            .output("items", "one item per line: - Name: task (by when)")
            .event("request-started", &["input-messages", "input-chunks"])
            .event("request-finished", &["prompt-tokens", "completion-tokens"])
    }

    fn handle(request: Request) -> Result<(), FeatureError> {
        let messages = required(request.messages("chat"), "chat")?;
        let text = action_items(messages, &request.options)?;
        answer("items", &text)?;
        Ok(())
    }
}

fn action_items(messages: &[ChatMessage], options: &Options) -> Result<String, FeatureError> {
    if messages.is_empty() {
        return Err(FeatureError::InvalidInput("the chat has no messages".into()));
    }
    let lines: Vec<String> = messages.iter().filter_map(chunks::chat_line).collect();
    if lines.is_empty() {
        return Err(FeatureError::InvalidInput("every message of the chat is empty".into()));
    }
    let chat = Chat::new(messages.iter().map(|m| (m.author.as_str(), m.text.as_str())));
    let budget = chunk_budget()?;
    let chunks = chunks::pack(&lines, budget, text_tokens);
    log_event("request-started", &[("input-messages", messages.len()), ("input-chunks", chunks.len())]);

    let mut usage = Usage::default();
    // The list shares the context with the chunk and the instructions.
    let room = inference::context_tokens().saturating_sub(budget + PROMPT_OVERHEAD_TOKENS).max(1);
    let list_tokens = options.max_output_tokens.unwrap_or(LIST_TOKENS).clamp(1, room);
    let mut questions_left = MAX_PERSON_QUESTIONS;
    let mut found: Vec<Item> = Vec::new();
    for chunk in &chunks {
        let mut items = Vec::new();
        for (system, user) in LIST_ITEMS {
            let turns = prompt(system, &user.replace("{chat}", chunk));
            let completion = usage.generate(&turns, &params(options, list_tokens, &[]))?;
            items = items::parse(&completion.text, &chat);
            if !items.is_empty() {
                break;
            }
        }
        // The list often misses someone: ask about each who took something on and is not in it.
        let listed: Vec<String> = items.iter().map(|item| item.person.clone()).collect();
        items.extend(ask_each_person(&mut usage, chunk, &chat, &listed, options, &mut questions_left)?);
        found.extend(items);
    }
    let items = items::merge(found, &chat);
    log_event(
        "request-finished",
        &[
            ("prompt-tokens", usage.prompt_tokens as usize),
            ("completion-tokens", usage.completion_tokens as usize),
        ],
    );
    Ok(items::format(&items))
}

/// What the list missed: one question per person of the chunk who seems to have taken something
/// on or been asked to and is not in the list, while questions are left.
fn ask_each_person(
    usage: &mut Usage,
    chunk: &str,
    chat: &Chat,
    listed: &[String],
    options: &Options,
    questions_left: &mut usize,
) -> Result<Vec<Item>, FeatureError> {
    let mut items = Vec::new();
    for person in items::committed_people(chunk, chat).into_iter().filter(|p| !listed.contains(p)) {
        if *questions_left == 0 {
            break;
        }
        *questions_left -= 1;
        let lines = items::lines_about(chunk, &person);
        let question = format!(
            "{lines}\n\nWhat did {person} agree to do? Answer in one short line, like \"{person} \
             will ...\", or \"Nothing.\""
        );
        let completion =
            usage.generate(&prompt(ASSISTANT, &question), &params(options, PERSON_TOKENS, &["\n\n"]))?;
        items.extend(items::parse_for(&completion.text, &person, chat));
    }
    Ok(items)
}

/// Chat tokens one model call can take, leaving room for the instructions and the answer.
fn chunk_budget() -> Result<u32, FeatureError> {
    let context = inference::context_tokens();
    let budget = context.saturating_sub(PROMPT_OVERHEAD_TOKENS + LIST_TOKENS).min(CHUNK_TOKENS);
    if budget < 32 {
        return Err(FeatureError::Internal(format!(
            "the model's context ({context} tokens) is too small to list action items"
        )));
    }
    Ok(budget)
}
