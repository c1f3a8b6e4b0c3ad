//! Smart replies: three short replies the reader could send to a chat's last message.
//!
//! The model is shown an example exchange and asked for three replies to the chat's last message;
//! the chat's last messages (at most [`MAX_MESSAGES`], as many as fit [`CHAT_TOKENS`]) are what
//! the replies are checked against (no repeats, no numbers or names the chat does not have). Its answer is cleaned up in
//! [`replies`]; while fewer than three usable replies are found, it is asked again (another
//! wording, then seeded sampled retries), at most [`TRIES`] calls in all.

#![forbid(unsafe_code)]

mod replies;

use pp_guest::{
    answer, inference, log_event, params, required, text_tokens, ChatMessage, Descriptor, FeatureError,
    Guest, Options, Request, Role, Turn, Usage,
};
use replies::{cut, one_line, Chat, MAX_MESSAGE_BYTES};

struct SmartReplies;

pp_guest::export!(SmartReplies);

/// Replies in the answer.
const WANTED: usize = 3;
/// The chat's last messages the model sees at most: replies answer the end of a chat.
const MAX_MESSAGES: usize = 20;
/// Most chat tokens in the prompt (the small model does best on short prompts).
const CHAT_TOKENS: u32 = 512;
/// Room for the instructions and the chat template around the chat.
const PROMPT_OVERHEAD_TOKENS: u32 = 128;
/// Tokens the model may write per call: three short lines and some slack.
const REPLY_TOKENS: u32 = 96;
/// Sampling for the retries after the greedy tries.
const SAMPLING_TEMPERATURE: f32 = 0.7;
/// The model calls of one request, in order: (wording, seed offset for a sampled retry).
const TRIES: &[(usize, Option<u64>)] = &[(0, None), (1, None), (0, Some(1)), (1, Some(2))];
const SYSTEM: &str = "You suggest short replies to chat messages.";

impl Guest for SmartReplies {
    fn describe() -> Descriptor {
        Descriptor::new("smart-replies", "Suggests three short replies to the chat's last message")
            .messages_part("chat", "the chat's messages, oldest first", true)
            .output("reply", "one suggested reply")
            .event("request-started", &["input-messages", "prompt-tokens"])
            .event("request-finished", &["prompt-tokens", "completion-tokens"])
    }

    fn handle(request: Request) -> Result<(), FeatureError> {
        let messages = required(request.messages("chat"), "chat")?;
        let (replies, _usage) = suggest(messages, &request.options)?;
        for reply in &replies {
            answer("reply", reply)?;
        }
        Ok(())
    }
}

/// The replies, one to [`WANTED`] of them, and the model's usage.
fn suggest(messages: &[ChatMessage], options: &Options) -> Result<(Vec<String>, Usage), FeatureError> {
    let recent = recent_lines(messages, chat_budget()?);
    let Some((_, last_text)) = recent.last().cloned() else {
        return Err(FeatureError::InvalidInput("every message of the chat is empty".into()));
    };
    let mut chat = Chat::new(recent.iter().map(|(author, text)| (author.as_str(), text.as_str())));
    chat.avoid(EXAMPLES.iter().flat_map(|(_, replies)| replies.lines()));
    log_event(
        "request-started",
        &[("input-messages", messages.len()), ("prompt-tokens", text_tokens(&last_text) as usize)],
    );

    let max_tokens = options.max_output_tokens.unwrap_or(REPLY_TOKENS).max(1);
    let mut usage = Usage::default();
    let mut found: Vec<String> = Vec::new();
    for &(way, seed) in TRIES {
        let options = match seed {
            None => *options,
            Some(offset) => Options {
                temperature: Some(options.temperature.filter(|t| *t > 0.0).unwrap_or(SAMPLING_TEMPERATURE)),
                seed: Some(options.seed.unwrap_or(0).wrapping_add(offset)),
                ..*options
            },
        };
        let turns = wording(way, &last_text);
        let completion = usage.generate(&turns, &params(&options, max_tokens, &["\n\n\n"]))?;
        for reply in chat.replies(&completion.text) {
            if found.len() < WANTED && !found.iter().any(|kept| replies::key(kept) == replies::key(&reply)) {
                found.push(reply);
            }
        }
        if found.len() >= WANTED {
            break;
        }
    }
    log_event(
        "request-finished",
        &[
            ("prompt-tokens", usage.prompt_tokens as usize),
            ("completion-tokens", usage.completion_tokens as usize),
        ],
    );
    if found.is_empty() {
        return Err(FeatureError::ModelError("the model suggested no usable reply".into()));
    }
    Ok((found, usage))
}

/// Example exchanges, one per way of asking: (message, replies). The tiny model copies the
/// shape of an example answer far better than it follows instructions. Each has a day in it: a
/// reply that copies the day is dropped unless the chat has it too, and so is a copied reply.
const EXAMPLES: &[(&str, &str)] = &[
    (
        "Is anyone free to help me move on Sunday?",
        "1. Sure, I can help you move!\n2. Sorry, I'm busy that day.\n3. What time should I come?",
    ),
    (
        "Want to grab lunch tomorrow?",
        "1. Yes, lunch sounds great!\n2. Sorry, I can't make it.\n3. Where do you want to go?",
    ),
];

/// One way of asking: an example exchange, then the chat's last message. The last message alone
/// works best: given the whole chat, the small model writes the chat on instead of answering.
fn wording(example: usize, text: &str) -> Vec<Turn> {
    let turn = |role, content: String| Turn { role, content };
    let ask = |message: &str| format!("Write 3 short replies to this message:\n\"{message}\"");
    let (message, replies) = EXAMPLES[example];
    vec![
        turn(Role::System, SYSTEM.into()),
        turn(Role::User, ask(message)),
        turn(Role::Assistant, replies.into()),
        turn(Role::User, ask(text)),
    ]
}

/// The chat's last non-empty messages, oldest first, as (author, text) on one line each: at most
/// [`MAX_MESSAGES`] and as many as fit `budget` tokens (the last one always, cut if need be).
fn recent_lines(messages: &[ChatMessage], budget: u32) -> Vec<(String, String)> {
    let mut lines = Vec::new();
    let mut used = 0;
    for message in messages.iter().rev() {
        let text = cut(&one_line(&message.text), MAX_MESSAGE_BYTES);
        if text.is_empty() {
            continue;
        }
        let author = one_line(&message.author);
        let tokens = text_tokens(&format!("{author}: {text}")) + 1;
        if !lines.is_empty() && (used + tokens > budget || lines.len() == MAX_MESSAGES) {
            break;
        }
        used += tokens;
        lines.push((author, text));
    }
    lines.reverse();
    lines
}

/// Chat tokens one prompt can take, leaving room for the instructions and the replies.
fn chat_budget() -> Result<u32, FeatureError> {
    let context = inference::context_tokens();
    let budget = context.saturating_sub(PROMPT_OVERHEAD_TOKENS + REPLY_TOKENS).min(CHAT_TOKENS);
    // The last message is cut to MAX_MESSAGE_BYTES, so it always fits this (a token is a byte or more).
    if budget < MAX_MESSAGE_BYTES as u32 / 2 {
        return Err(FeatureError::Internal(format!(
            "the model's context ({context} tokens) is too small to suggest replies"
        )));
    }
    Ok(budget)
}
