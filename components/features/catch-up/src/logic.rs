//! The pure part of catch-up, with no host calls (so it is tested natively): which messages are
//! new to the reader, how they are packed for the model, and how the model's answer becomes points.

use pp_guest::facts::Facts;
use pp_guest::ChatMessage;

/// Points in the answer at most.
pub const MAX_POINTS: usize = 5;

/// The messages that came after the reader's last one (all of them if the reader never wrote);
/// empty if the reader's message is the last. Authors match without regard to case or spacing.
pub fn since_last<'a>(messages: &'a [ChatMessage], reader: &str) -> &'a [ChatMessage] {
    let reader = one_line(reader).to_lowercase();
    match messages.iter().rposition(|m| one_line(&m.author).to_lowercase() == reader) {
        Some(last) => &messages[last + 1..],
        None => messages,
    }
}

/// `Author: text` on one line, or nothing for an empty message.
pub fn chat_line(message: &ChatMessage) -> Option<String> {
    let text = one_line(&message.text);
    if text.is_empty() {
        return None;
    }
    let author = one_line(&message.author);
    Some(if author.is_empty() { text } else { format!("{author}: {text}") })
}

pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The newest lines whose tokens (each plus one for its newline) add up to at most `budget`, in
/// their order; at least the newest line, even if it alone is longer.
pub fn most_recent(lines: &[String], budget: u32, tokens: impl Fn(&str) -> u32) -> &[String] {
    let mut used = 0u32;
    let mut start = lines.len();
    while start > 0 {
        let cost = tokens(&lines[start - 1]).saturating_add(1);
        if used.saturating_add(cost) > budget && start < lines.len() {
            break;
        }
        used = used.saturating_add(cost);
        start -= 1;
    }
    &lines[start..]
}

/// Packs lines, in order, into chunks of at most `budget` tokens (a single longer line makes a
/// chunk of its own; the caller bounds lines beforehand).
pub fn pack(lines: &[String], budget: u32, tokens: impl Fn(&str) -> u32) -> Vec<String> {
    let mut chunks = Vec::new();
    let mut chunk = String::new();
    let mut used = 0u32;
    for line in lines {
        let cost = tokens(line).saturating_add(1);
        if used.saturating_add(cost) > budget && !chunk.is_empty() {
            chunks.push(std::mem::take(&mut chunk));
            used = 0;
        }
        if !chunk.is_empty() {
            chunk.push('\n');
        }
        chunk.push_str(line);
        used = used.saturating_add(cost);
    }
    if !chunk.is_empty() {
        chunks.push(chunk);
    }
    chunks
}

/// Cuts a line to at most `max` bytes, at a word (or character) boundary.
pub fn cut(line: &str, max: usize) -> String {
    if line.len() <= max {
        return line.to_string();
    }
    let mut end = max;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    let head = &line[..end];
    head.rsplit_once(' ').map(|(words, _)| words).filter(|w| !w.is_empty()).unwrap_or(head).to_string()
}

/// The points of a model's answer: bullet lines (or sentences, when it wrote prose) without their
/// markers; dropped are headings, filler, lines that quote a message of `chat` verbatim or continue
/// the chat ("Tom: ..."), lines with a number or name that `source` lacks, and repeats. At most
/// [`MAX_POINTS`].
pub fn points(text: &str, source: &Facts, chat: &[ChatMessage]) -> Vec<String> {
    let lines: Vec<&str> =
        text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.ends_with(':')).collect();
    let is_bullet =
        |line: &&&str| line.starts_with(['-', '*', '•']) || line.starts_with(|c: char| c.is_ascii_digit());
    let items: Vec<String> = if lines.iter().filter(is_bullet).count() >= lines.len().div_ceil(2) {
        lines.iter().filter(is_bullet).map(|line| strip_marker(line)).collect()
    } else {
        sentences(&lines.join(" ")).iter().map(|sentence| strip_marker(sentence)).collect()
    };
    let quotes: Vec<String> = chat.iter().map(|m| words(&m.text)).filter(|q| !q.is_empty()).collect();
    let authors: Vec<String> = chat.iter().map(|m| one_line(&m.author).to_lowercase()).collect();
    let known: Vec<String> = chat
        .iter()
        .flat_map(|m| [words(&m.author), words(&m.text)])
        .collect::<Vec<_>>()
        .join(" ")
        .split(' ')
        .map(String::from)
        .collect();
    let mut out: Vec<String> = Vec::new();
    for item in items {
        let item = item.trim_matches(|c: char| c == '"' || c.is_whitespace()).to_string();
        let bare = words(&item);
        if bare.split(' ').count() < 2 || is_filler(&bare) {
            continue;
        }
        if continues_chat(&item, &authors) || quotes_message(&bare, &quotes) {
            continue;
        }
        if invents(source, &item) || addresses_a_stranger(&item, &known) {
            continue;
        }
        if out.iter().any(|kept| words(kept) == bare) {
            continue;
        }
        out.push(item);
        if out.len() == MAX_POINTS {
            break;
        }
    }
    out
}

/// When the model gives no usable point: the newest messages that name the reader or ask a
/// question (else the newest), attributed to their authors, at most three, in chat order.
pub fn fallback(messages: &[ChatMessage], reader: &str) -> Vec<String> {
    let reader = one_line(reader).to_lowercase();
    let lines: Vec<(bool, String)> = messages
        .iter()
        .filter_map(|m| {
            let line = chat_line(m)?;
            let asks = m.text.contains('?') || words(&m.text).split(' ').any(|w| w == reader);
            Some((asks, cut(&line, 160)))
        })
        .collect();
    let picked: Vec<&String> = if lines.iter().any(|(asks, _)| *asks) {
        lines.iter().filter(|(asks, _)| *asks).map(|(_, line)| line).collect()
    } else {
        lines.iter().map(|(_, line)| line).collect()
    };
    picked[picked.len().saturating_sub(3)..].iter().map(|line| line.to_string()).collect()
}

/// The answer's text: one point a line, each starting with "- ".
pub fn render(points: &[String]) -> String {
    points.iter().map(|p| format!("- {p}")).collect::<Vec<_>>().join("\n")
}

/// A number or name that the source does not have.
pub fn invents(source: &Facts, text: &str) -> bool {
    let found = Facts::of(text);
    found.numbers.iter().any(|n| !source.numbers.contains(n))
        || found.names.iter().any(|n| !source.names.contains(n))
}

/// "Dave, can you..." or "Dave: ..." with a name that is in no message (the fact checker does not
/// see names that start a sentence).
fn addresses_a_stranger(item: &str, known: &[String]) -> bool {
    let first = item.split_whitespace().next().unwrap_or("");
    let name = first.trim_end_matches([',', ':']);
    name.len() < first.len()
        && name.chars().next().is_some_and(char::is_uppercase)
        && !known.contains(&name.to_lowercase())
}

/// "Tom: I'll bring..." with a chat author before the colon: the model went on with the chat.
fn continues_chat(item: &str, authors: &[String]) -> bool {
    item.split_once(':').is_some_and(|(head, _)| authors.contains(&one_line(head).to_lowercase()))
}

/// The whole of a message, or four or more words of one in a row.
fn quotes_message(bare: &str, quotes: &[String]) -> bool {
    let padded = format!(" {bare} ");
    quotes.iter().any(|quote| {
        bare == quote
            || (bare.split(' ').count() >= 4 && format!(" {quote} ").contains(&padded))
            || (quote.split(' ').count() >= 3 && padded.contains(&format!(" {quote} ")) && {
                // The point is the message with a word or two around it ("Tom said: ...").
                bare.split(' ').count() <= quote.split(' ').count() + 3
            })
    })
}

fn is_filler(bare: &str) -> bool {
    const FILLER: &[&str] = &[
        "here are",
        "here is",
        "i hope",
        "let me know",
        "summary of",
        "bullet point",
        "as an ai",
        "i'm sorry",
        "i am sorry",
        "nothing new",
    ];
    FILLER.iter().any(|f| bare.starts_with(f) || bare.contains(f))
}

/// Lowercase words of a text, without punctuation, space-separated (for comparing lines).
fn words(text: &str) -> String {
    text.to_lowercase()
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
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
                _ => return rest.trim_end().to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(author: &str, text: &str) -> ChatMessage {
        ChatMessage { author: author.into(), text: text.into() }
    }

    fn chat() -> Vec<ChatMessage> {
        vec![
            msg("Sam", "I can do Saturday, see you all"),
            msg("Maya", "Change of plan: picnic moves to Sunday at 2pm"),
            msg("Sam", "ok!"),
            msg("Tom", "Rain is forecast, so we meet at Maya's place instead"),
            msg("Priya", "Sam, can you bring the blanket?"),
        ]
    }

    #[test]
    fn takes_the_messages_after_the_readers_last_one() {
        let chat = chat();
        let after = since_last(&chat, " sam ");
        assert_eq!(after.iter().map(|m| m.author.as_str()).collect::<Vec<_>>(), ["Tom", "Priya"]);
    }

    #[test]
    fn a_reader_who_never_wrote_gets_everything_and_a_last_writer_nothing() {
        let chat = chat();
        assert_eq!(since_last(&chat, "Lena").len(), chat.len());
        assert!(since_last(&chat, "Priya").is_empty());
        assert!(since_last(&[], "Sam").is_empty());
    }

    #[test]
    fn keeps_the_newest_lines_that_fit() {
        let lines: Vec<String> = ["a b c", "d e", "f g h i", "j"].iter().map(|s| s.to_string()).collect();
        let count = |s: &str| s.split(' ').count() as u32;
        assert_eq!(most_recent(&lines, 7, count), &lines[2..]);
        assert_eq!(most_recent(&lines, 100, count), &lines[..]);
        // The newest line alone is kept even when it is over the budget.
        assert_eq!(most_recent(&lines, 1, count), &lines[3..]);
        assert_eq!(pack(&lines, 7, count), ["a b c\nd e", "f g h i\nj"]);
        assert_eq!(cut("hello wonderful world", 12), "hello");
    }

    #[test]
    fn cleans_bullets_and_drops_filler_headings_and_repeats() {
        let chat = chat();
        let source = Facts::of("Sam\nMaya: picnic moves to Sunday at 2pm\nTom: we meet at Maya's place");
        let answer = "Here are the points:\nKey points:\n1. The picnic moved to Sunday at 2pm.\n\
                      * - They now meet at Maya's place.\n- the picnic moved to Sunday at 2pm\n\
                      I hope this helps!";
        assert_eq!(
            points(answer, &source, &chat),
            ["The picnic moved to Sunday at 2pm.", "They now meet at Maya's place."]
        );
    }

    #[test]
    fn drops_quotes_chat_lines_and_invented_facts() {
        let chat = chat();
        let source = Facts::of("- Sam, Maya, Sunday, 2pm, Tom, Priya, blanket");
        let answer = "- Tom: Rain is forecast, so we meet at Maya's place instead\n\
                      - Sam, can you bring the blanket?\n\
                      - Rain is forecast, so we meet\n\
                      - The picnic starts at 4pm on Monday\n\
                      - Then Ben will drive everyone\n\
                      - Dave, bring the blanket\n\
                      - Priya asks Sam to bring the blanket";
        assert_eq!(points(answer, &source, &chat), ["Priya asks Sam to bring the blanket"]);
    }

    #[test]
    fn falls_back_to_what_asks_the_reader() {
        let chat = chat();
        assert_eq!(since_last(&chat, "Sam").len(), 2);
        assert_eq!(fallback(since_last(&chat, "Sam"), "Sam"), ["Priya: Sam, can you bring the blanket?"]);
        assert_eq!(
            fallback(&chat[3..4], "Sam"),
            ["Tom: Rain is forecast, so we meet at Maya's place instead"]
        );
    }

    #[test]
    fn prose_becomes_sentences_and_at_most_five_points() {
        let chat = chat();
        let source = Facts::of("Sunday");
        let answer = "The plan is Sunday now. The place changed too. A blanket is needed. Rain came \
                      in. Some food is planned. One more thing happened.";
        let got = points(answer, &source, &chat);
        assert_eq!(got.len(), MAX_POINTS);
        assert_eq!(got[0], "The plan is Sunday now.");
        assert_eq!(render(&got[..2]), "- The plan is Sunday now.\n- The place changed too.");
    }
}
