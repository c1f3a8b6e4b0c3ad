//! Rewrite: returns the user's draft rewritten in a style (formal, friendly, concise, fix-grammar),
//! keeping its names, numbers and facts.

#![forbid(unsafe_code)]

use pp_guest::{
    inference, log_event, params, prompt, text_tokens, Event, FeatureError, FeatureInput, Field,
    Guest, Options, Request, Response, RewriteInput, Style, Usage,
};

struct Rewrite;

pp_guest::export!(Rewrite);

/// Room left for the instructions and the chat template around the draft.
const PROMPT_OVERHEAD_TOKENS: u32 = 96;

impl Guest for Rewrite {
    fn handle(request: Request) -> Result<Response, FeatureError> {
        let FeatureInput::Rewrite(input) = request.input else {
            return Err(FeatureError::InvalidInput("this component rewrites drafts; send a rewrite request".into()));
        };
        rewrite(input, &request.options)
    }
}

fn rewrite(input: RewriteInput, options: &Options) -> Result<Response, FeatureError> {
    let draft = input.draft.trim();
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
    log_event(Event::RequestStarted, &[(Field::PromptTokens, draft_tokens as usize)]);

    let max_tokens = options.max_output_tokens.unwrap_or(draft_tokens * 2 + 32).clamp(1, room);
    let mut usage = Usage::default();
    let completion = usage.generate(
        &prompt(instructions(input.style), draft),
        &params(options, max_tokens, &["\n\n\n"]),
    )?;
    let text = clean(&completion.text);
    if text.is_empty() {
        return Err(FeatureError::ModelError("the model returned an empty rewrite".into()));
    }
    log_event(
        Event::RequestFinished,
        &[(Field::CompletionTokens, usage.completion_tokens as usize)],
    );
    Ok(usage.into_response(text))
}

fn instructions(style: Style) -> &'static str {
    match style {
        Style::Formal => {
            "Rewrite the user's message in a formal, polite tone. Keep every name, number, date and \
             place exactly as written. Reply with the rewritten message only."
        }
        Style::Friendly => {
            "Rewrite the user's message in a warm, friendly tone. Keep every name, number, date and \
             place exactly as written. Reply with the rewritten message only."
        }
        Style::Concise => {
            "Rewrite the user's message to be short and clear. Keep every name, number, date and \
             place. Reply with the rewritten message only."
        }
        Style::FixGrammar => {
            "Correct the spelling and grammar of the user's message. Change nothing else. Reply \
             with the corrected message only."
        }
    }
}

/// Drops the wrapping a small model likes to add: a label line and surrounding quotes.
fn clean(text: &str) -> String {
    let mut text = text.trim();
    for label in ["Rewritten message:", "Corrected message:", "Here is the rewritten message:"] {
        if let Some(rest) = text.strip_prefix(label) {
            text = rest.trim();
        }
    }
    let unquoted = text.strip_prefix('"').and_then(|t| t.strip_suffix('"'));
    unquoted.unwrap_or(text).trim().to_string()
}
