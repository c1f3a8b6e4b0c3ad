//! A picked message as one point: the model's third-person report of it when that report says
//! nothing the message does not, else the message itself, attributed.

use crate::pick::{one_line, words, Pick, Reason};
use pp_guest::facts::Facts;

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
/// Words that make a point a request.
const ASKING: &[&str] = &["asks", "asked", "asking", "wants", "requests", "requested"];
/// First-person words: a "report" with them copied the message instead.
const FIRST_PERSON: &[&str] = &["i", "i'm", "i'll", "i've", "i'd", "me", "my", "mine"];

/// The point for `pick`: `report` (the model's answer) if it passes [`faithful`], else the
/// message quoted. A question put to the reader is always quoted: it is theirs to answer.
pub fn point(pick: &Pick, report: Option<&str>, reader: &str) -> String {
    let author = one_line(&pick.message.author);
    if pick.reason == Reason::AsksReader {
        return format!("{author} asks you: {}", quote(&pick.message.text));
    }
    match report.and_then(|r| faithful(r, pick, reader)) {
        Some(report) => report,
        None if author.is_empty() => quote(&pick.message.text),
        None => format!("{author}: {}", quote(&pick.message.text)),
    }
}

/// The report's first sentence or two if it starts with the author's name, is short, is in the
/// third person, and has no name, number or content word that the message (or its author and
/// reader) lacks.
pub fn faithful(report: &str, pick: &Pick, reader: &str) -> Option<String> {
    let author = one_line(&pick.message.author);
    let line = report.lines().map(str::trim).find(|l| !l.is_empty())?;
    let line = line.trim_start_matches(['-', '*', '•', ' ']).trim_matches('"').trim();
    let line = line.strip_prefix("Report:").unwrap_or(line).trim();
    let said = words(line);
    let first = said.first()?;
    if author.is_empty() || *first != words(&author).first()?.as_str() {
        return None;
    }
    let source = words(&pick.message.text);
    if said.len() < 3 || said.len() > source.len() + 8 || said == source {
        return None;
    }
    if said.iter().any(|w| FIRST_PERSON.contains(&w.as_str())) || negated(&said) != negated(&source) {
        return None;
    }
    // "Kim asks to…" for "I can update the slides": a request only where the message makes one.
    let asks = pick.message.text.contains('?') || source.iter().any(|w| w == "please");
    if !asks && said.iter().any(|w| ASKING.contains(&w.as_str())) {
        return None;
    }
    let allowed = Facts::of(&format!("{} For {author} and {reader}.", pick.message.text));
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
    if !numbers(&pick.message.text).is_subset(&numbers(line)) {
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

/// The message on one line, cut at a word boundary.
fn quote(text: &str) -> String {
    let text = one_line(text);
    if text.len() <= MAX_QUOTE_BYTES {
        return text;
    }
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
    use pp_guest::ChatMessage;

    fn pick(author: &str, text: &str, reason: Reason) -> (ChatMessage, Reason) {
        (ChatMessage { author: author.into(), text: text.into() }, reason)
    }

    fn check(report: &str, (message, reason): &(ChatMessage, Reason)) -> Option<String> {
        faithful(report, &Pick { message, reason: *reason }, "Sam")
    }

    #[test]
    fn a_faithful_report_is_kept() {
        let tom = pick("Tom", "Agreed, Sunday at 1pm. I'll bring sandwiches.", Reason::Decision);
        assert_eq!(
            check("Tom agreed to Sunday at 1pm and will bring sandwiches", &tom).as_deref(),
            Some("Tom agreed to Sunday at 1pm and will bring sandwiches.")
        );
        let priya = pick(
            "Priya",
            "Bad news: rain is forecast for Saturday. Can we move it to Sunday?",
            Reason::Change,
        );
        assert!(check("- Priya says rain is forecasted for Saturday and asks to move it to Sunday.", &priya)
            .is_some());
    }

    #[test]
    fn an_invented_copied_or_unattributed_report_is_refused() {
        let tom = pick("Tom", "Agreed, Sunday at 1pm. I'll bring sandwiches.", Reason::Decision);
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
            assert_eq!(check(bad, &tom), None, "{bad}");
        }
    }

    #[test]
    fn questions_to_the_reader_and_refused_reports_are_quoted() {
        let (message, _) = pick("Maya", "Sam, can you   bring a ball?", Reason::AsksReader);
        let asks = Pick { message: &message, reason: Reason::AsksReader };
        assert_eq!(
            point(&asks, Some("Maya asks Sam to bring a ball."), "Sam"),
            "Maya asks you: Sam, can you bring a ball?"
        );
        let (message, _) = pick("Tom", "I'll bring sandwiches.", Reason::Decision);
        let tom = Pick { message: &message, reason: Reason::Decision };
        assert_eq!(point(&tom, Some("Tom will bring cake."), "Sam"), "Tom: I'll bring sandwiches.");
        assert_eq!(point(&tom, None, "Sam"), "Tom: I'll bring sandwiches.");
        let long = "word ".repeat(100);
        assert!(quote(&long).ends_with("word…") && quote(&long).len() <= MAX_QUOTE_BYTES + 3);
    }
}
