//! One chat message as one point of an answer: the model's third-person report of it, kept only
//! when it says nothing the message does not, else the message itself, attributed. So every point
//! can be traced to one message.

use crate::chunks::one_line;
use crate::facts::Facts;
use crate::heard::words;
use crate::{params, ChatMessage, FeatureError, Options, Role, Turn, Usage};

/// Bytes of a quoted message at most.
const MAX_QUOTE_BYTES: usize = 200;

/// Words a report may add to what the message says (how it was said, and glue).
const REPORTING: &[&str] = &[
    "says",
    "said",
    "asks",
    "asked",
    "wants",
    "suggests",
    "suggested",
    "agrees",
    "agreed",
    "will",
    "would",
    "that",
    "they",
    "them",
    "their",
    "there",
    "this",
    "about",
    "also",
    "because",
    "confirms",
    "confirmed",
    "thinks",
    "everyone",
    "group",
    "offers",
    "offered",
    "plans",
    "planned",
    "with",
    "could",
    "should",
    "whether",
    "others",
    "someone",
    "proposes",
    "proposed",
    "reports",
    "mentions",
    "notes",
    "meet",
    "meeting",
    "instead",
    "bring",
    "brings",
    "going",
    "from",
];
/// Short words a report may add to say the message in the third person.
const GLUE: &[&str] = &[
    "a", "an", "the", "to", "of", "at", "on", "in", "for", "by", "and", "or", "is", "are", "be", "it", "its",
    "he", "she", "his", "her", "him", "has", "have", "can", "so", "as", "if",
];
/// Words that make a point a decision.
const DECIDING: &[&str] =
    &["agrees", "agreed", "confirms", "confirmed", "decided", "decides", "yes", "ok", "okay", "sure", "fine"];
/// Words that make a point a request.
const ASKING: &[&str] = &["asks", "asked", "asking", "wants", "requests", "requested"];
/// First-person words: a "report" with them copied the message instead.
const FIRST_PERSON: &[&str] = &["i", "i'm", "i'll", "i've", "i'd", "me", "my", "mine"];

/// Tokens the model may write for one report.
const REPORT_TOKENS: u32 = 48;
/// Bytes of a message given to the model (a longer one is quoted, cut, instead).
const MAX_REPORTED_BYTES: usize = 400;

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

/// The model's third-person report of one message (check it with [`faithful`]), or nothing for
/// a message without author or too long to report (quote it instead).
pub fn ask(
    usage: &mut Usage,
    message: &ChatMessage,
    options: &Options,
) -> Result<Option<String>, FeatureError> {
    let author = one_line(&message.author);
    let text = one_line(&message.text);
    if author.is_empty() || text.len() > MAX_REPORTED_BYTES {
        return Ok(None);
    }
    let mut turns = vec![Turn { role: Role::System, content: SYSTEM.into() }];
    for (example, report) in EXAMPLES {
        turns.push(Turn { role: Role::User, content: example.to_string() });
        turns.push(Turn { role: Role::Assistant, content: report.to_string() });
    }
    turns.push(Turn { role: Role::User, content: format!("Message from {author}: \"{text}\"") });
    let max_tokens = options.max_output_tokens.unwrap_or(REPORT_TOKENS).clamp(1, REPORT_TOKENS);
    let completion = usage.generate(&turns, &params(options, max_tokens, &["\n"]))?;
    Ok(Some(completion.text))
}

/// The point for `message` from the model's `report`: the report if it is [`faithful`], else the
/// message itself, attributed and quoted.
pub fn point(message: &ChatMessage, report: Option<&str>, reader: &str) -> String {
    let author = one_line(&message.author);
    match report.and_then(|r| faithful(r, message, reader)) {
        Some(report) => report,
        None if author.is_empty() => quote(&message.text),
        None => format!("{author}: {}", quote(&message.text)),
    }
}

/// The report's first sentence or two if it starts with the author's name, is short, is in the
/// third person, and has no name, number or content word that the message (or its author and
/// reader) lacks.
pub fn faithful(report: &str, message: &ChatMessage, reader: &str) -> Option<String> {
    let author = one_line(&message.author);
    let line = report.lines().map(str::trim).find(|l| !l.is_empty())?;
    let line = line.trim_start_matches(['-', '*', '•', ' ']).trim_matches('"').trim();
    let line = line.strip_prefix("Report:").unwrap_or(line).trim();
    let said = words(line);
    let first = said.first()?;
    if author.is_empty() || *first != words(&author).first()?.as_str() {
        return None;
    }
    let source = words(&message.text);
    if said.len() < 3 || said.len() > source.len() + 8 || said == source {
        return None;
    }
    if said.iter().any(|w| FIRST_PERSON.contains(&w.as_str())) || negated(&said) != negated(&source) {
        return None;
    }
    // "Omar confirmed Friday at 8" for "Can we do Friday at 8?": a decision only where the
    // message makes one.
    let decides = source.iter().any(|w| DECIDING.contains(&w.as_str()));
    if message.text.contains('?') && !decides && said.iter().any(|w| DECIDING.contains(&w.as_str())) {
        return None;
    }
    // "Kim asks to…" for "I can update the slides": a request only where the message makes one.
    let asks = message.text.contains('?') || source.iter().any(|w| w == "please");
    if !asks && said.iter().any(|w| ASKING.contains(&w.as_str())) {
        return None;
    }
    let allowed = Facts::of(&format!("{} For {author} and {reader}.", message.text));
    let found = Facts::of(line);
    if found.numbers.iter().any(|n| !allowed.numbers.contains(n))
        || found.names.iter().any(|n| !allowed.names.contains(n))
    {
        return None;
    }
    let known: Vec<String> =
        source.iter().chain(words(&author).iter()).chain(words(reader).iter()).cloned().collect();
    // Every word the message lacks must be glue or a reporting word, whatever its length: "Ben"
    // or "Sam" in "Ben will bring…" changes who does what.
    let new_word = |w: &&String| {
        !REPORTING.contains(&w.as_str())
            && !GLUE.contains(&w.as_str())
            && !known.iter().any(|k| same_word(k, w))
    };
    if said.iter().skip(1).any(|w| new_word(&w)) {
        return None;
    }
    // Every number the message states is still there (a report that drops the time misleads).
    let numbers = |text: &str| Facts::of(text).numbers;
    if !numbers(&message.text).is_subset(&numbers(line)) {
        return None;
    }
    // And it keeps most of what the message says (a report that drops the facts is no point).
    let content: Vec<&String> = source.iter().filter(|w| w.len() >= 4).collect();
    let kept = content.iter().filter(|w| said.iter().any(|s| same_word(s, w))).count();
    if kept * 2 < content.len() {
        return None;
    }
    let mut out = line.to_string();
    if !out.ends_with(['.', '!', '?']) {
        out.push('.');
    }
    Some(out)
}

/// Says "not" in some form: a report must not add or drop one (the content-word check does not
/// see "no" or "can't" for "can").
fn negated(words: &[String]) -> bool {
    const NOT: &[&str] = &["not", "no", "never", "cannot", "nothing", "nobody", "none"];
    let polite = |i: usize| words.get(i + 1).is_some_and(|next| next == "problem" || next == "worries");
    words.iter().enumerate().any(|(i, w)| (NOT.contains(&w.as_str()) && !polite(i)) || w.ends_with("n't"))
}

/// One word for another in a report: "bring" for "brings", "forecast" for "forecasted".
fn same_word(a: &str, b: &str) -> bool {
    let stem = |w: &str| w.chars().take(5).collect::<String>();
    a == b || (a.len() >= 5 && b.len() >= 5 && stem(a) == stem(b))
}

/// The message on one line; a long one cut to the sentences that carry the most facts (in their
/// order, "…" where some were left out), or at a word boundary when no sentence fits.
pub fn quote(text: &str) -> String {
    let text = one_line(text);
    if text.len() <= MAX_QUOTE_BYTES {
        return text;
    }
    let sentences = sentences(&text);
    let mut ranked: Vec<(usize, usize)> = sentences
        .iter()
        .enumerate()
        .map(|(i, sentence)| {
            let facts = Facts::of(sentence);
            (facts.numbers.len() + facts.names.len(), i)
        })
        .filter(|&(facts, _)| facts > 0)
        .collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut kept: Vec<usize> = Vec::new();
    let mut used = 0;
    for (_, i) in ranked {
        if used + sentences[i].len() < MAX_QUOTE_BYTES {
            used += sentences[i].len() + 1;
            kept.push(i);
        }
    }
    if kept.is_empty() {
        return cut(&text);
    }
    kept.sort_unstable();
    let mut out = String::new();
    let mut next = 0;
    for i in kept {
        if i > next {
            out.push_str(if out.is_empty() { "… " } else { " … " });
        } else if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(sentences[i]);
        next = i + 1;
    }
    if next < sentences.len() {
        out.push_str(" …");
    }
    out
}

/// The sentences of a one-line text: cut after `.`, `!` or `?` and a space (not after "Mr.").
fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        let end = i + c.len_utf8();
        if !matches!(c, '.' | '!' | '?') || !text[end..].starts_with(' ') {
            continue;
        }
        // Only the word before the mark is looked at (rsplit stops at its space): linear.
        let word = text[start..i].rsplit(' ').next().unwrap_or("");
        if c == '.' && ["Mr", "Mrs", "Ms", "Dr", "St"].contains(&word) {
            continue;
        }
        out.push(text[start..end].trim());
        start = end;
    }
    if !text[start..].trim().is_empty() {
        out.push(text[start..].trim());
    }
    out
}

/// The text cut at a word boundary before [`MAX_QUOTE_BYTES`].
fn cut(text: &str) -> String {
    let mut end = MAX_QUOTE_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let head = text[..end].rsplit_once(' ').map(|(w, _)| w).unwrap_or(&text[..end]);
    format!("{head}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(author: &str, text: &str) -> ChatMessage {
        ChatMessage { author: author.into(), text: text.into() }
    }

    #[test]
    fn a_faithful_report_is_kept() {
        let tom = msg("Tom", "Agreed, Sunday at 1pm. I'll bring sandwiches.");
        assert_eq!(
            faithful("Tom agreed to Sunday at 1pm and will bring sandwiches", &tom, "Sam").as_deref(),
            Some("Tom agreed to Sunday at 1pm and will bring sandwiches.")
        );
        let priya = msg("Priya", "Bad news: rain is forecast for Saturday. Can we move it to Sunday?");
        let report = "- Priya says rain is forecasted for Saturday and asks to move it to Sunday.";
        assert!(faithful(report, &priya, "Sam").is_some());
    }

    #[test]
    fn an_invented_copied_or_unattributed_report_is_refused() {
        let tom = msg("Tom", "Agreed, Sunday at 1pm. I'll bring sandwiches.");
        for bad in [
            "Tom agreed to Sunday at 2pm and will bring sandwiches.", // a number it lacks
            "Tom agreed to Monday at 1pm.",                           // a day it lacks
            "Tom and Lena will bring sandwiches on Sunday.",          // a name it lacks
            "Tom will bring cake on Sunday at 1pm.",                  // a word it lacks
            "Tom: Agreed, Sunday at 1pm. I'll bring sandwiches.",     // the message itself
            "He will bring sandwiches on Sunday.",                    // not the author first
            "Tom can't bring sandwiches on Sunday at 1pm.",           // a negation it lacks
            "Tom asks to bring sandwiches on Sunday at 1pm.",         // a request it does not make
            "Tom agreed to Sunday.",                                  // drops most of it
            "Tom agreed to Sunday at 1pm. Ben will bring sandwiches.", // a short new name
            "Tom agreed to Sunday and will bring sandwiches.",        // drops the time
            "Tom",                                                    // too short
        ] {
            assert_eq!(faithful(bad, &tom, "Sam"), None, "{bad}");
        }
    }

    #[test]
    fn a_question_is_not_reported_as_a_decision() {
        let omar = msg("Omar", "Can we do Friday at 8?");
        assert_eq!(faithful("Omar confirmed Friday at 8.", &omar, ""), None);
        assert!(faithful("Omar asks to do Friday at 8.", &omar, "").is_some());
        let yes = msg("Omar", "Yes, Friday at 8 works?");
        assert!(faithful("Omar confirmed Friday at 8.", &yes, "").is_some());
        let curly = msg("Sam", "I can’t come on Friday at 8.");
        assert_eq!(faithful("Sam can come on Friday at 8.", &curly, ""), None, "the negation stays");
    }

    #[test]
    fn a_long_run_without_spaces_is_cut_in_linear_time() {
        let text = format!("{}. Meet at 5pm.", "字".repeat(100_000));
        assert!(quote(&text).len() <= MAX_QUOTE_BYTES + 4, "{}", quote(&text).len());
    }

    #[test]
    fn a_refused_report_leaves_the_message_quoted() {
        let tom = msg("Tom", "I'll bring   sandwiches.");
        assert_eq!(point(&tom, Some("Tom will bring cake."), "Sam"), "Tom: I'll bring sandwiches.");
        assert_eq!(point(&tom, None, "Sam"), "Tom: I'll bring sandwiches.");
        assert_eq!(point(&msg(" ", "hello there"), None, ""), "hello there");
        let long = "word ".repeat(100);
        assert!(quote(&long).ends_with("word…") && quote(&long).len() <= MAX_QUOTE_BYTES + 3);
    }

    #[test]
    fn a_long_message_is_cut_to_its_sentences_with_facts() {
        let chatty = "I have been thinking about this all week and talked to everyone I know about it.";
        let text = format!(
            "{chatty} {chatty} We meet on Saturday at 10am. {chatty} Bring £5 for the skip. {chatty}"
        );
        assert_eq!(quote(&text), "… We meet on Saturday at 10am. … Bring £5 for the skip. …");
        let facts = format!("Bring £5 for Mr. Ellis. {chatty} {chatty} {chatty}");
        assert_eq!(quote(&facts), "Bring £5 for Mr. Ellis. …");
    }
}
