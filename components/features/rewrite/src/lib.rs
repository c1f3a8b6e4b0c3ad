//! Rewrite: returns the user's draft rewritten in a style (formal, friendly, concise, fix-grammar),
//! keeping its names, numbers and facts.

#![forbid(unsafe_code)]

mod plain;

use pp_guest::facts::{self, Facts};
use pp_guest::{
    answer, inference, log_event, params, prompt, required, text_tokens, Descriptor, FeatureError, Guest,
    Options, Request, Usage,
};

struct Rewrite;

pp_guest::export!(Rewrite);

/// Room left for the instructions and the chat template around the draft.
const PROMPT_OVERHEAD_TOKENS: u32 = 160;
/// Sampled answers tried after the greedy ones, when none of those kept every fact.
const SAMPLED_TRIES: u64 = 5;
const SAMPLING_TEMPERATURE: f32 = 0.6;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Style {
    Formal,
    Friendly,
    Concise,
    FixGrammar,
}

/// The `style` parameter's choices, in the descriptor's order: one list, so that the descriptor
/// and the parsing cannot drift apart.
const STYLES: &[(&str, Style)] = &[
    ("formal", Style::Formal),
    ("friendly", Style::Friendly),
    ("concise", Style::Concise),
    ("fix-grammar", Style::FixGrammar),
];

impl Guest for Rewrite {
    fn describe() -> Descriptor {
        let styles: Vec<&str> = STYLES.iter().map(|(name, _)| *name).collect();
        Descriptor::new("rewrite", "Rewrites a draft in a style, keeping its names, numbers and facts")
            .text_part("draft", "the text to rewrite", true)
            .choice_param("style", "how the rewrite should read", &styles, true)
            .output("rewrite", "the draft rewritten")
            .event("request-started", &["prompt-tokens"])
            .event("request-finished", &["completion-tokens"])
    }

    fn handle(request: Request) -> Result<(), FeatureError> {
        let draft = required(request.text("draft"), "draft")?;
        let style = required(request.choice("style"), "style")?;
        // The value is the user's: the error names the parameter, never quotes it.
        let style =
            STYLES.iter().find(|(name, _)| *name == style).map(|(_, style)| *style).ok_or_else(|| {
                FeatureError::InvalidInput("parameter style is not one of the listed styles".into())
            })?;
        let (text, _usage) = rewrite(draft, style, &request.options)?;
        answer("rewrite", &text)?;
        Ok(())
    }
}

/// The rewrite's text and the model's usage.
fn rewrite(draft: &str, style: Style, options: &Options) -> Result<(String, Usage), FeatureError> {
    let draft = draft.trim();
    if draft.is_empty() {
        return Err(FeatureError::InvalidInput("the draft is empty".into()));
    }
    let draft_tokens = text_tokens(draft);
    // The rewrite is about as long as the draft, so draft and answer must share the context.
    let room = inference::context_tokens().saturating_sub(PROMPT_OVERHEAD_TOKENS) / 2;
    if draft_tokens > room {
        return Err(FeatureError::InputTooLarge(format!(
            "the draft has {draft_tokens} tokens; at most {room} can be rewritten at once"
        )));
    }
    log_event("request-started", &[("prompt-tokens", draft_tokens as usize)]);

    // A small model often answers the draft instead of rewriting it, or drops a name. Ask in a
    // few ways, greedily and then sampled with fixed seeds, and keep the first answer that keeps
    // every fact of the draft, invents none and is in the style (else the one that comes
    // closest, or the draft spelled out when that comes closer). The model reads the draft with
    // its text-speak spelled out.
    let max_tokens = options.max_output_tokens.unwrap_or(draft_tokens * 2 + 32).clamp(1, room);
    let source = Facts::of(draft);
    let spelled_out = plain::spelled_out(draft, style);
    let penalty = |text: &str| {
        facts::penalty(&source, text)
            + length_penalty(text, draft)
            + plain::style_penalty(style, text, draft)
            + plain::drift_penalty(text, &spelled_out)
    };
    let ways = prompts(style, &spelled_out);
    let greedy = ways.iter().map(|way| (way, *options));
    let sampled = (1..=SAMPLED_TRIES).map(|seed| {
        let options = Options {
            temperature: Some(options.temperature.unwrap_or(SAMPLING_TEMPERATURE)),
            seed: Some(options.seed.unwrap_or(0).wrapping_add(seed)),
            ..*options
        };
        (&ways[1], options)
    });
    let mut usage = Usage::default();
    let mut best: Option<(usize, String)> = None;
    for ((system, user), options) in greedy.chain(sampled) {
        let completion = usage.generate(&prompt(system, user), &params(&options, max_tokens, &["\n\n\n"]))?;
        let text = clean(&completion.text, draft);
        let penalty = penalty(&text);
        if best.as_ref().is_none_or(|(lowest, _)| penalty < *lowest) {
            best = Some((penalty, text));
        }
        if penalty == 0 {
            break;
        }
    }
    // Spelled out, a draft is a formal text or a grammar fix of its own: the answer when the
    // model's best misses and it misses nothing.
    let fallback = matches!(style, Style::Formal | Style::FixGrammar) && penalty(&spelled_out) == 0;
    if fallback && best.as_ref().is_some_and(|(lowest, _)| *lowest > 0) {
        best = Some((0, spelled_out));
    }
    let text = best.map(|(_, text)| text).unwrap_or_default();
    if text.is_empty() {
        return Err(FeatureError::ModelError("the model returned an empty rewrite".into()));
    }
    // The draft given back is no rewrite (a draft without errors excepted).
    if style != Style::FixGrammar && plain::words(&text) == plain::words(draft) {
        return Err(FeatureError::ModelError(
            "every try gave the draft back unchanged (it may already read as asked)".into(),
        ));
    }
    log_event("request-finished", &[("completion-tokens", usage.completion_tokens as usize)]);
    Ok((text, usage))
}

/// The ways of asking, best first, as (system, user) turns.
fn prompts(style: Style, draft: &str) -> [(String, String); 3] {
    let (aim, how, example_in, example_out) = match style {
        Style::Formal => (
            "make it more professional and formal",
            "in a formal tone",
            "hi, can we move our call to 4pm tmrw? Ben can't make it earlier",
            "Hello, would it be possible to move our call to 4 pm tomorrow? Ben is unable to join earlier.",
        ),
        Style::Friendly => (
            "make it more friendly and approachable",
            "in a warm, friendly tone",
            "The meeting with Ben is moved to 4 pm on Monday. Be there.",
            "Hi! Just a heads-up: the meeting with Ben is now at 4 pm on Monday. Hope to see you there!",
        ),
        Style::Concise => (
            "make it more concise",
            "to be short and clear",
            "Hello everyone, I just wanted to say that I think it would be good if we could maybe meet at 6 pm on Friday at Luca's house instead.",
            "Let's meet at 6 pm on Friday at Luca's house instead.",
        ),
        Style::FixGrammar => (
            "correct its grammar and spelling",
            "with correct grammar and spelling",
            "she dont know were the keys is, can you check at 5?",
            "She doesn't know where the keys are. Can you check at 5?",
        ),
    };
    let helper = "You are a helpful writing assistant.";
    [
        (
            format!(
                "You're an AI assistant for text re-writing. Rewrite the input text to {aim} while \
                 keeping its meaning and every name, number and date."
            ),
            draft.to_string(),
        ),
        (
            helper.to_string(),
            format!("Rewrite this message {how}. Keep every name, number and date.\n\n\"{draft}\""),
        ),
        (
            helper.to_string(),
            format!(
                "Rewrite each message {how}, keeping every name, number and date.\n\n\
                 Message: {example_in}\nRewritten: {example_out}\n\nMessage: {draft}\nRewritten:"
            ),
        ),
    ]
}

/// A rewrite is about as long as its draft; an answer several times longer is a model that
/// went on writing (a reply, an essay, the next example).
fn length_penalty(text: &str, draft: &str) -> usize {
    let limit = 3 * draft.len() + 60;
    if text.len() > limit {
        2 + 2 * (text.len() / limit)
    } else {
        0
    }
}

/// Drops the wrapping a small model likes to add: a label, an introduction before the rewrite
/// in quotes, surrounding quotes.
fn clean(text: &str, draft: &str) -> String {
    let mut text = text.trim();
    for label in ["Rewritten message:", "Corrected message:", "Here is the rewritten message:", "Rewritten:"]
    {
        if let Some(rest) = text.strip_prefix(label) {
            text = rest.trim();
        }
    }
    if let Some(quoted) = longest_quote(text).filter(|q| q.len() * 2 >= draft.len()) {
        return quoted.trim().to_string();
    }
    // A one-line draft gets a one-line rewrite: what follows is the model going on.
    if !draft.contains('\n') {
        if let Some((first, _)) =
            text.split_once('\n').filter(|(first, _)| first.trim().len() * 2 >= draft.len())
        {
            text = first.trim();
        }
    }
    let unquoted = text.strip_prefix('"').and_then(|t| t.strip_suffix('"'));
    unquoted.unwrap_or(text).trim().to_string()
}

/// The longest text between a pair of double quotes.
fn longest_quote(text: &str) -> Option<&str> {
    text.split('"')
        .skip(1)
        .step_by(2)
        .filter(|_| text.matches('"').count() >= 2)
        .max_by_key(|quoted| quoted.len())
}
