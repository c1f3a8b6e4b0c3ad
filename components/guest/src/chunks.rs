//! A chat as lines, packed into chunks that fit one model call (small models do best on short
//! inputs, so long chats are read a chunk at a time). Pure: the token counter is passed in
//! ([`crate::text_tokens`] in a component, a stand-in in native tests).

use crate::ChatMessage;

/// `Author: text` on one line, or nothing for an empty message.
pub fn chat_line(message: &ChatMessage) -> Option<String> {
    let text = one_line(&message.text);
    if text.is_empty() {
        return None;
    }
    let author = one_line(&message.author);
    Some(if author.is_empty() { text } else { format!("{author}: {text}") })
}

/// The text with every run of whitespace (newlines too) made one space.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Packs lines, in order, into chunks of at most `budget` tokens as `tokens` counts them; a line
/// longer than the budget is cut between words.
pub fn pack(lines: &[String], budget: u32, tokens: impl Fn(&str) -> u32) -> Vec<String> {
    let mut chunks = Vec::new();
    let mut chunk = String::new();
    let mut used = 0;
    for line in lines.iter().flat_map(|line| split_long(line, budget, &tokens)) {
        let cost = tokens(&line) + 1;
        if used + cost > budget && !chunk.is_empty() {
            chunks.push(std::mem::take(&mut chunk));
            used = 0;
        }
        if !chunk.is_empty() {
            chunk.push('\n');
        }
        chunk.push_str(&line);
        used += cost;
    }
    if !chunk.is_empty() {
        chunks.push(chunk);
    }
    chunks
}

/// Cuts a line too long for one chunk between words, into pieces of at most `budget` bytes: a
/// token is at least one byte, so each piece fits.
fn split_long(line: &str, budget: u32, tokens: &impl Fn(&str) -> u32) -> Vec<String> {
    let max = budget as usize;
    if line.len() <= max || tokens(line) < budget {
        return vec![line.to_string()];
    }
    let mut pieces = Vec::new();
    let mut piece = String::new();
    for word in line.split(' ') {
        for part in cut_word(word, max) {
            if !piece.is_empty() && piece.len() + 1 + part.len() > max {
                pieces.push(std::mem::take(&mut piece));
            }
            if !piece.is_empty() {
                piece.push(' ');
            }
            piece.push_str(part);
        }
    }
    if !piece.is_empty() {
        pieces.push(piece);
    }
    pieces
}

/// A word longer than `max` bytes, cut at character boundaries: pieces of at most `max` bytes,
/// or one character when a character alone is longer.
fn cut_word(word: &str, max: usize) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = word;
    while rest.len() > max {
        let mut cut = max;
        while cut > 0 && !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        if cut == 0 {
            cut = rest.chars().next().map_or(rest.len(), char::len_utf8);
        }
        parts.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    if !rest.is_empty() || parts.is_empty() {
        parts.push(rest);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One token per byte: an upper bound of the real count.
    fn bytes(text: &str) -> u32 {
        text.len() as u32
    }

    fn message(author: &str, text: &str) -> ChatMessage {
        ChatMessage { author: author.into(), text: text.into() }
    }

    #[test]
    fn formats_lines_and_skips_empty_messages() {
        assert_eq!(chat_line(&message(" Tom ", "I'll  book\nit")).as_deref(), Some("Tom: I'll book it"));
        assert_eq!(chat_line(&message("", "hi")).as_deref(), Some("hi"));
        assert_eq!(chat_line(&message("Tom", "  \n")), None);
    }

    #[test]
    fn packs_in_order_within_the_budget() {
        let lines: Vec<String> = (0..10).map(|i| format!("Ana: message {i}")).collect();
        let chunks = pack(&lines, 40, bytes);
        assert!(chunks.len() > 1);
        assert!(chunks.iter().all(|chunk| chunk.lines().map(|l| bytes(l) + 1).sum::<u32>() <= 40));
        assert_eq!(chunks.join("\n"), lines.join("\n"));
    }

    #[test]
    fn cuts_a_line_longer_than_the_budget() {
        let long = format!("Ana: {}", "word ".repeat(50).trim());
        let chunks = pack(&[long], 30, bytes);
        assert!(chunks.len() > 1);
        assert!(chunks.iter().all(|chunk| chunk.len() <= 30));
        let cut = pack(&["x".repeat(100)], 30, bytes);
        assert_eq!(cut.concat(), "x".repeat(100));
    }

    #[test]
    fn cuts_words_at_character_boundaries_and_always_moves_on() {
        assert_eq!(cut_word("ééé", 3), ["é", "é", "é"]);
        assert_eq!(cut_word("ab😀cd", 3), ["ab", "😀", "cd"]);
        // A budget below one character's bytes still cuts (one character a piece), never loops.
        assert_eq!(cut_word("😀😀", 1), ["😀", "😀"]);
        assert_eq!(cut_word("abc", 0), ["a", "b", "c"]);
    }
}
