//! What can be done to a draft without the model: text-speak spelled out ("u" → "you", "tmrw" →
//! "tomorrow"), sentences capitalized — the model reads the plain draft, and it is the formal
//! and fix-grammar fallback — and the checks that a rewrite is in the asked style.

use crate::Style;
use pp_guest::facts::DAYS;

/// Text-speak and what it stands for (lowercase, whole words).
const SPELLED_OUT: &[(&str, &str)] = &[
    ("u", "you"),
    ("ur", "your"),
    ("r", "are"),
    ("ya", "you"),
    ("thx", "thanks"),
    ("thnx", "thanks"),
    ("ty", "thank you"),
    ("pls", "please"),
    ("plz", "please"),
    ("gonna", "going to"),
    ("wanna", "want to"),
    ("gotta", "have to"),
    ("tmrw", "tomorrow"),
    ("tmr", "tomorrow"),
    ("2moro", "tomorrow"),
    ("b4", "before"),
    ("msg", "message"),
    ("cuz", "because"),
    ("coz", "because"),
    ("btw", "by the way"),
    ("idk", "I don't know"),
    ("im", "I'm"),
    ("dont", "don't"),
    ("cant", "can't"),
    ("wont", "won't"),
    ("didnt", "didn't"),
    ("doesnt", "doesn't"),
    ("mins", "minutes"),
];
/// Month names a draft may write in lower case ("may" left out: it is a verb too); day names
/// come from `facts::DAYS`.
const MONTHS: &[&str] = &[
    "january",
    "february",
    "march",
    "april",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];
/// Days that are no names.
const RELATIVE_DAYS: &[&str] = &["today", "tonight", "tomorrow"];
/// Words a formal text leaves out altogether.
const DROPPED_WHEN_FORMAL: &[&str] = &["lol", "omg", "haha", "lmao"];
/// Words no formal text has (after spelling out).
const SLANG: &[&str] = &[
    "u", "ur", "thx", "pls", "plz", "gonna", "wanna", "gotta", "lol", "btw", "hey", "yeah", "ya", "cuz",
    "omg", "tmrw", "idk",
];
/// Signs of a warm tone.
const WARM: &[&str] =
    &["!", "thank", "hope", "happy", "glad", "great", "love", "please", "hi ", "hello", ":)"];

/// The draft with text-speak spelled out, a standalone "i" made "I", days and months and each
/// sentence capitalized;
/// for a formal text also without "lol" and the like, "thanks" made "thank you" and "hey"
/// "hello".
pub fn spelled_out(draft: &str, style: Style) -> String {
    let formal = matches!(style, Style::Formal);
    let mut out: Vec<String> = Vec::new();
    for token in draft.split_whitespace() {
        let start = token.find(|c: char| c.is_alphanumeric()).unwrap_or(token.len());
        let end = token
            .char_indices()
            .rfind(|(_, c)| c.is_alphanumeric())
            .map_or(start, |(i, c)| i + c.len_utf8())
            .max(start);
        let (before, word, after) = (&token[..start], &token[start..end], &token[end..]);
        let lower = word.to_lowercase();
        if formal && DROPPED_WHEN_FORMAL.contains(&lower.as_str()) {
            // "lol." keeps its full stop on the word before: the sentences stay apart.
            if let Some(last) = out.last_mut().filter(|_| after.ends_with(['.', '!', '?'])) {
                last.push_str(&after[after.len() - 1..]);
            }
            continue;
        }
        let mut word = match SPELLED_OUT.iter().find(|(short, _)| *short == lower) {
            Some((_, long)) => long.to_string(),
            None if word == "i" => "I".to_string(),
            None if is_name(&lower) => capitalize_sentences(&lower),
            None => word.to_string(),
        };
        if formal && word == "thanks" {
            word = "thank you".into();
        }
        if formal && lower == "hey" {
            word = "hello".into();
        }
        // "sorry!!" is not formal either.
        let after = if formal { collapse_marks(after) } else { after.to_string() };
        out.push(format!("{before}{word}{after}"));
    }
    capitalize_sentences(&out.join(" "))
}

/// A day or month name.
fn is_name(lower: &str) -> bool {
    MONTHS.contains(&lower) || (DAYS.contains(&lower) && !RELATIVE_DAYS.contains(&lower))
}

/// "!!" and "?!" as one mark.
fn collapse_marks(marks: &str) -> String {
    let mut out = String::new();
    for c in marks.chars() {
        let repeated = matches!(c, '!' | '?') && out.ends_with(['!', '?']);
        if !repeated {
            out.push(c);
        }
    }
    out
}

/// The first letter of the text and of each sentence in upper case (a sentence ends at `.`, `!`
/// or `?` before a space: "example.com" stays as it is).
fn capitalize_sentences(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut start = true;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if start && c.is_alphabetic() {
            out.extend(c.to_uppercase());
            start = false;
            continue;
        }
        if matches!(c, '.' | '!' | '?') && chars.peek().is_none_or(|next| next.is_whitespace()) {
            start = true;
        } else if !c.is_whitespace() && !matches!(c, '"' | '\'' | '(') {
            start = false;
        }
        out.push(c);
    }
    out
}

/// Lowercase words, for comparing texts.
pub fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .replace(['\u{2019}', '\u{2018}'], "'")
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .map(String::from)
        .collect()
}

/// How far `text` is from the asked style (0: in it). A text that only repeats the draft is in
/// no style (fix-grammar excepted: a correct draft stays as it is).
pub fn style_penalty(style: Style, text: &str, draft: &str) -> usize {
    let lower = text.to_lowercase();
    let unchanged = words(text) == words(draft);
    match style {
        Style::Formal => {
            let slang = words(text).iter().filter(|w| SLANG.contains(&w.as_str())).count();
            3 * slang + if unchanged { 4 } else { 0 }
        }
        Style::Concise if text.chars().count() >= draft.chars().count() => 4,
        Style::Friendly if !WARM.iter().any(|w| lower.contains(w)) => 3,
        Style::Concise | Style::Friendly if unchanged => 4,
        Style::Concise | Style::Friendly | Style::FixGrammar => 0,
    }
}

/// How far `text` drifted from what the draft says: 3 when it keeps under a third of the
/// draft's words of three letters or more (compared by their first five letters; the draft
/// spelled out, so "thanks" counts for "thx"), 0 otherwise. A small model sometimes answers
/// with something else altogether ("Laudéz," for "thx").
pub fn drift_penalty(text: &str, spelled_out_draft: &str) -> usize {
    let stem = |w: &String| w.chars().take(5).collect::<String>();
    let said: Vec<String> = words(text).iter().map(stem).collect();
    let draft: Vec<String> =
        words(spelled_out_draft).iter().filter(|w| w.chars().count() >= 3).map(stem).collect();
    let kept = draft.iter().filter(|w| said.contains(w)).count();
    if !draft.is_empty() && kept * 3 < draft.len() {
        3
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spells_out_text_speak_and_capitalizes() {
        assert_eq!(
            spelled_out("hey, can u send me the report by friday? thx", Style::Concise),
            "Hey, can you send me the report by Friday? Thanks"
        );
        assert_eq!(
            spelled_out("lol sorry, gonna send the 600 euros tmrw. i promise!!", Style::Formal),
            "Sorry, going to send the 600 euros tomorrow. I promise!"
        );
        assert_eq!(spelled_out("thx", Style::Formal), "Thank you");
        assert_eq!(spelled_out("hey jo, thx!", Style::Formal), "Hello jo, thank you!");
        assert_eq!(spelled_out("see u at the café, José", Style::Friendly), "See you at the café, José");
        assert_eq!(spelled_out("ok lol. see example.com", Style::Formal), "Ok. See example.com");
        assert_eq!(spelled_out("привет, как дела?", Style::Concise), "Привет, как дела?");
        assert_eq!(spelled_out("she dont know (im sure)", Style::FixGrammar), "She don't know (I'm sure)");
    }

    #[test]
    fn an_answer_about_something_else_has_drifted() {
        assert_eq!(drift_penalty("Laudéz,", "Thank you"), 3);
        assert_eq!(drift_penalty("Thank you very much.", "Thank you"), 0);
        let draft = "Kofi, return the drill you borrowed. I need it on Sunday.";
        assert_eq!(drift_penalty("Ah, Jubilee! I'm all set for Sunday.", draft), 3);
        assert_eq!(drift_penalty("Hi Kofi! Could you bring back the drill? I need it on Sunday.", draft), 0);
    }

    #[test]
    fn checks_the_style() {
        let draft = "hey can u send it";
        assert_eq!(style_penalty(Style::Formal, "Could you send it?", draft), 0);
        assert_eq!(style_penalty(Style::Formal, "Hey, could u send it?", draft), 6);
        assert_eq!(style_penalty(Style::Formal, "Hey can u send it.", draft), 10, "slang, unchanged");
        assert_eq!(style_penalty(Style::Concise, "Send it.", draft), 0);
        assert_eq!(style_penalty(Style::Concise, "Hey, can you please send it?", draft), 4);
        assert_eq!(style_penalty(Style::Friendly, "Hi! Could you send it?", draft), 0);
        assert_eq!(style_penalty(Style::Friendly, "Send it.", draft), 3);
        assert_eq!(style_penalty(Style::FixGrammar, "hey can u send it", draft), 0);
    }
}
