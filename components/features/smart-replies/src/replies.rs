//! The text work of smart replies, with no model and no host: the chat's lines as the prompt
//! shows them, and the replies found in a small model's answer.
//!
//! A 135M model numbers its lines, quotes them, labels them ("Reply 1:"), adds headings and
//! chatter, repeats the chat, and makes up times and names; [`Chat::replies`] keeps only short,
//! new, one-sentence replies that state nothing the chat does not.

use pp_guest::facts::Facts;

/// Words a reply may have at most.
pub const MAX_WORDS: usize = 15;
/// A message longer than this (in bytes) is cut at a word boundary before it goes in the prompt.
pub const MAX_MESSAGE_BYTES: usize = 480;

/// Capitalized words in the middle of a sentence that are not names.
const NOT_NAMES: &[&str] = &["i'm", "i'll", "i'd", "i've", "ok", "okay", "omg", "lol", "thanks", "yes", "no"];
/// Signs of a line that talks about the task instead of being a reply.
const OFF_TASK: &[&str] = &[
    "as an ai",
    "ai assistant",
    "language model",
    "here are",
    "here is",
    "replies",
    "reply to",
    "response",
    "suggestion",
    "last message",
];

/// The chat as the replies are checked against it.
pub struct Chat {
    /// Every message's text, normalized (see [`key`]).
    messages: Vec<String>,
    /// The chat's numbers and names, and its authors' names.
    facts: Facts,
    /// The whole chat, lowercased, for looking names up.
    lower: String,
}

impl Chat {
    /// `messages` are (author, text) pairs.
    pub fn new<'a>(messages: impl IntoIterator<Item = (&'a str, &'a str)>) -> Chat {
        let mut texts = Vec::new();
        let mut all = String::new();
        let mut authors = Vec::new();
        for (author, text) in messages {
            texts.push(key(text));
            all.push_str(&one_line(author));
            all.push_str(": ");
            all.push_str(&one_line(text));
            all.push('\n');
            authors.extend(author.split_whitespace().map(str::to_lowercase));
        }
        let mut facts = Facts::of(&all);
        facts.names.extend(authors);
        Chat { messages: texts, facts, lower: all.to_lowercase() }
    }

    /// Makes `texts` (the prompt's example replies) count as repeats too.
    pub fn avoid<'a>(&mut self, texts: impl IntoIterator<Item = &'a str>) {
        self.messages.extend(texts.into_iter().map(|text| key(strip_markers(text))));
    }

    /// The replies in a model's answer, in its order: without markers, labels and quotes, one
    /// sentence each, at most [`MAX_WORDS`] words, none repeating a chat message or inventing a
    /// number or name, no two the same.
    pub fn replies(&self, answer: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for line in answer.lines().flat_map(split_numbered) {
            let Some(reply) = clean(&line) else { continue };
            let normalized = key(&reply);
            if normalized.is_empty()
                || self.repeats_chat(&normalized)
                || self.invents_facts(&reply)
                || out.iter().any(|kept| key(kept) == normalized)
            {
                continue;
            }
            out.push(reply);
        }
        out
    }

    /// Whether the reply is one of the chat's messages, or quotes a longer one whole.
    fn repeats_chat(&self, normalized: &str) -> bool {
        self.messages.iter().any(|message| {
            message == normalized
                || (message.split(' ').count() >= 4 && normalized.contains(message.as_str()))
        })
    }

    /// Whether the reply has a number, or a name, day or time word, that the chat does not.
    fn invents_facts(&self, reply: &str) -> bool {
        let found = Facts::of(reply);
        found.numbers.iter().any(|number| !self.facts.numbers.contains(number))
            || found.names.iter().any(|name| {
                !NOT_NAMES.contains(&name.as_str())
                    && !self.facts.names.contains(name)
                    && !self.lower.contains(name.as_str())
            })
    }
}

/// Whitespace (newlines included) collapsed to single spaces.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// At most `max` bytes of `text`, cut after a whole word (or inside one that is longer alone),
/// with "…" when something was cut.
pub fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let head = &text[..end];
    let head = match head.rfind(' ') {
        Some(space) if space > 0 => &head[..space],
        _ => head,
    };
    format!("{}…", head.trim_end())
}

/// Lowercased words of letters and digits, one space apart: two texts that differ only in case,
/// punctuation or spacing have the same key.
pub fn key(text: &str) -> String {
    text.split(|c: char| !c.is_alphanumeric() && c != '\'')
        .map(|word| word.trim_matches('\''))
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

/// One reply from one line of the answer, or none for a heading, chatter or an overlong line.
fn clean(line: &str) -> Option<String> {
    let line = line.replace("**", "");
    let line = line.trim();
    // A heading ("Replies:", "Here are three options:") introduces replies and is none.
    if line.ends_with(':') {
        return None;
    }
    let text = unquote(strip_label(strip_markers(line)));
    let text = first_sentence(text).trim();
    let text = unquote(text);
    let lower = text.to_lowercase();
    if OFF_TASK.iter().any(|marker| lower.contains(marker)) {
        return None;
    }
    let words = text.split_whitespace().count();
    if words == 0 || words > MAX_WORDS || !text.chars().any(char::is_alphabetic) {
        return None;
    }
    Some(text.to_string())
}

/// Splits "1. Yes! 2. No. 3. Maybe." (replies numbered on one line) before each later number.
fn split_numbered(line: &str) -> Vec<String> {
    if !line.trim_start().starts_with("1.") && !line.trim_start().starts_with("1)") {
        return vec![line.to_string()];
    }
    let mut pieces = Vec::new();
    let mut current = String::new();
    let mut next = 2;
    let mut rest = line;
    while !rest.is_empty() {
        let marker = format!(" {next}.");
        let marker_paren = format!(" {next})");
        let found = [rest.find(&marker), rest.find(&marker_paren)].into_iter().flatten().min();
        match found {
            Some(at) if rest[at + marker.len()..].starts_with(' ') => {
                current.push_str(&rest[..at]);
                pieces.push(std::mem::take(&mut current));
                rest = &rest[at + 1..];
                next += 1;
            }
            _ => {
                current.push_str(rest);
                rest = "";
            }
        }
    }
    pieces.push(current);
    pieces
}

/// The line without its list markers and emphasis: "- ", "* ", "• ", "1. ", "2) ", "**", "#".
fn strip_markers(line: &str) -> &str {
    let mut rest = line.trim();
    loop {
        let next = if let Some(after) = rest.strip_prefix(['-', '*', '•', '#', '>']) {
            after
        } else {
            let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            match rest[digits..].strip_prefix(['.', ')', ':']) {
                Some(after) if digits > 0 && (after.is_empty() || after.starts_with(char::is_whitespace)) => {
                    after
                }
                _ => return rest.trim_end_matches('*').trim(),
            }
        };
        rest = next.trim_start();
    }
}

/// The text after a short label: "Reply 1:", "Option:", "You:", "Maya:" (the model writing
/// the chat on). A colon inside the text ("at 11:30") is no label.
fn strip_label(text: &str) -> &str {
    match text.split_once(": ") {
        Some((label, rest))
            if !rest.trim().is_empty()
                && label.split_whitespace().count() <= 3
                && label.chars().all(|c| c.is_alphanumeric() || c == ' ' || c == '*') =>
        {
            strip_markers(rest)
        }
        _ => text,
    }
}

/// Without one pair of surrounding quotes (straight or curly, single or double).
fn unquote(text: &str) -> &str {
    let text = text.trim();
    for (open, close) in [('"', '"'), ('“', '”'), ('\'', '\''), ('‘', '’')] {
        if let Some(inner) = text.strip_prefix(open).and_then(|t| t.strip_suffix(close)) {
            return inner.trim();
        }
    }
    // An opening quote the model never closed, or a closing one after its own words.
    text.trim_start_matches(['"', '“']).trim_end_matches(['"', '”']).trim()
}

/// The first sentence, or the first two when the first is a word or three ("Sure! I'll bring
/// the cake."): a reply is one sentence, and what follows is the model going on.
fn first_sentence(text: &str) -> &str {
    let ends: Vec<usize> = text
        .char_indices()
        .filter(|&(i, c)| {
            matches!(c, '.' | '!' | '?')
                && text[i + c.len_utf8()..].starts_with(char::is_whitespace)
                && !text[..i].ends_with(['.', '!', '?'])
        })
        .map(|(i, c)| i + c.len_utf8())
        .collect();
    let Some(&first) = ends.first() else { return text };
    if text[..first].split_whitespace().count() <= 3 {
        return ends.get(1).map_or(text, |&second| &text[..second]);
    }
    &text[..first]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picnic() -> Chat {
        Chat::new([
            ("Maya", "Hi all! Shall we do the picnic this Saturday?"),
            ("Tom", "Yes! Saturday works for me."),
            ("Maya", "Let's meet at 11am at Riverside Park."),
            ("Priya", "Who can bring drinks?"),
        ])
    }

    #[test]
    fn numbered_bulleted_labelled_and_quoted_lines_become_replies() {
        let answer =
            "Here are three replies:\n1. I can bring the drinks!\n2) \"Sure, I'll bring lemonade.\"\n\
                      - Reply 3: **Sorry, I can't this time.**\n";
        assert_eq!(
            picnic().replies(answer),
            ["I can bring the drinks!", "Sure, I'll bring lemonade.", "Sorry, I can't this time."]
        );
    }

    #[test]
    fn replies_numbered_on_one_line_are_split() {
        let answer = "1. I'll bring drinks. 2. I can bring water. 3) Count me in for drinks!";
        assert_eq!(
            picnic().replies(answer),
            ["I'll bring drinks.", "I can bring water.", "Count me in for drinks!"]
        );
    }

    #[test]
    fn a_reply_is_one_sentence_or_a_short_word_and_one() {
        let chat = picnic();
        assert_eq!(chat.replies("I can bring drinks. Also snacks and plates."), ["I can bring drinks."]);
        assert_eq!(chat.replies("Sure! I'll bring drinks. And more."), ["Sure! I'll bring drinks."]);
        // "11.30" is no sentence end.
        assert_eq!(chat.replies("1. Yes, see you at 11am!"), ["Yes, see you at 11am!"]);
    }

    #[test]
    fn drops_repeats_of_the_chat_duplicates_empty_and_overlong_lines() {
        let answer = "1. Who can bring drinks?\n2. yes! saturday works for me\n3. I'll bring drinks.\n\
                      4. I'll bring drinks!\n5. \"\"\n6. -\n\
                      7. I think that I could maybe bring some of the drinks if nobody else has offered to do it yet\n\
                      8. Maya: Let's meet at 11am at Riverside Park. I'll bring juice too";
        assert_eq!(picnic().replies(answer), ["I'll bring drinks."]);
    }

    #[test]
    fn drops_replies_that_invent_times_names_or_days() {
        let answer =
            "1. I'll bring drinks at 3pm.\n2. Ask Daniel, he has a cooler.\n3. Sure, see you tomorrow!\n\
                      4. Sure Maya, I'll bring drinks on Saturday.\n5. OK, I'm on it.";
        assert_eq!(picnic().replies(answer), ["Sure Maya, I'll bring drinks on Saturday.", "OK, I'm on it."]);
    }

    #[test]
    fn drops_chatter_about_the_task() {
        let answer = "Sure, here are some replies you could send.\nAs an AI, I can't go to picnics.\n\
                      These replies are friendly.\nI'm bringing drinks!";
        assert_eq!(picnic().replies(answer), ["I'm bringing drinks!"]);
    }

    #[test]
    fn a_colon_in_a_time_is_no_label() {
        let chat = Chat::new([("Ana", "Is 10:30 ok for the call?")]);
        assert_eq!(chat.replies("1. Yes, 10:30 works for me."), ["Yes, 10:30 works for me."]);
        assert_eq!(chat.replies("You: Yes, works for me."), ["Yes, works for me."]);
    }

    #[test]
    fn drops_copies_of_the_example_replies() {
        let mut chat = picnic();
        chat.avoid(["1. Sure, I can help you move!", "2. Sorry, I'm busy that day."]);
        assert_eq!(
            chat.replies("1. Sure, I can help you move!\n2. Sorry, I'm busy that day\n3. I'll bring juice."),
            ["I'll bring juice."]
        );
    }

    #[test]
    fn keys_ignore_case_punctuation_and_spacing() {
        assert_eq!(key("  Yes!  Saturday works, for ME. "), "yes saturday works for me");
        assert_eq!(key("I'll go"), "i'll go");
    }

    #[test]
    fn cuts_long_messages_between_words() {
        assert_eq!(cut("short", 10), "short");
        assert_eq!(cut("one two three four", 10), "one two…");
        assert_eq!(cut("ééééé", 5), "éé…");
        assert_eq!(one_line(" a\n b\t c "), "a b c");
    }
}
