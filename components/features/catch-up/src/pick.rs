//! Which new messages a returning reader needs, found without the model (a 135M model invents
//! when asked to choose): questions put to them, changed plans, decisions and facts — and not a
//! plan that a later message changed.

pub use pp_guest::chunks::one_line;
use pp_guest::heard::{replaced, Heard};
use pp_guest::ChatMessage;

/// Points in the answer at most.
pub const MAX_POINTS: usize = 5;

/// Why a message is worth the reader's time, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    /// Only the newest messages, when none says anything more.
    Recent,
    Fact,
    Decision,
    Change,
    /// Names the reader and asks something of them.
    AsksReader,
}

#[derive(Debug, Clone, Copy)]
pub struct Pick<'a> {
    pub message: &'a ChatMessage,
    pub reason: Reason,
}

/// The messages after the reader's last one (all of them if the reader never wrote); empty if the
/// reader's message is the last. Authors match without regard to case or spacing.
pub fn since_last<'a>(messages: &'a [ChatMessage], reader: &str) -> &'a [ChatMessage] {
    let reader = one_line(reader).to_lowercase();
    match messages.iter().rposition(|m| one_line(&m.author).to_lowercase() == reader) {
        Some(last) => &messages[last + 1..],
        None => messages,
    }
}

/// At most [`MAX_POINTS`] of `new`, in chat order: the strongest reasons first, newer before
/// older among equals; a message whose day or time a later change replaced counts for less.
pub fn pick<'a>(new: &'a [ChatMessage], reader: &str) -> Vec<Pick<'a>> {
    let reader = one_line(reader).to_lowercase();
    let heard: Vec<Heard> = new.iter().map(|m| Heard::of(m, &reader)).collect();
    let replaced = replaced(&heard);
    let mut ranked: Vec<(i32, usize, Reason)> = Vec::new();
    for (i, h) in heard.iter().enumerate() {
        if h.words.is_empty() || h.filler {
            continue;
        }
        let changed_later = replaced[i];
        let mut score = h.score();
        if changed_later && reason(h) != Reason::AsksReader {
            score -= 3;
        }
        if score >= 2 {
            ranked.push((score, i, reason(h)));
        }
    }
    if ranked.is_empty() {
        // Nothing stands out: the newest messages, which is what the reader would read first.
        let said = heard.iter().enumerate().filter(|(_, h)| !h.words.is_empty() && !h.filler);
        ranked = said.map(|(i, _)| (0, i, Reason::Recent)).collect();
    }
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
    ranked.truncate(MAX_POINTS);
    ranked.sort_by_key(|&(_, i, _)| i);
    ranked.into_iter().map(|(_, i, reason)| Pick { message: &new[i], reason }).collect()
}

/// Why a message is worth the reader's time.
fn reason(heard: &Heard) -> Reason {
    if heard.names_reader && heard.question {
        Reason::AsksReader
    } else if heard.change {
        Reason::Change
    } else if heard.decision {
        Reason::Decision
    } else if heard.plan != 0 || heard.names_reader || heard.question {
        Reason::Fact
    } else {
        Reason::Recent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn msg(author: &str, text: &str) -> ChatMessage {
        ChatMessage { author: author.into(), text: text.into() }
    }

    fn picnic() -> Vec<ChatMessage> {
        vec![
            msg("Maya", "Hi all! Shall we do the picnic this Saturday?"),
            msg("Sam", "Saturday works for me. I can bring the frisbee."),
            msg("Tom", "Great, let's meet at 11am at Riverside Park."),
            msg("Priya", "Bad news: rain is forecast for Saturday. Can we move it to Sunday?"),
            msg("Maya", "Sunday is fine. Let's say 1pm instead of 11am, same park."),
            msg("Tom", "ok"),
            msg("Tom", "Agreed, Sunday at 1pm. I'll bring sandwiches."),
            msg("Priya", "I'll bring lemonade and a blanket."),
            msg("Maya", "Sam, can you still come on Sunday? And could you bring a ball too?"),
        ]
    }

    fn texts<'a>(picks: &[Pick<'a>]) -> Vec<&'a str> {
        picks.iter().map(|p| p.message.text.as_str()).collect()
    }

    #[test]
    fn takes_the_messages_after_the_readers_last_one() {
        let chat = picnic();
        assert_eq!(since_last(&chat, " sam ").len(), 7);
        assert_eq!(since_last(&chat, "Lena").len(), chat.len());
        assert!(since_last(&chat[..5], "MAYA").is_empty());
        assert!(since_last(&[], "Sam").is_empty());
    }

    #[test]
    fn keeps_the_question_the_changes_and_decisions_and_drops_the_replaced_plan_and_filler() {
        let chat = picnic();
        let picks = pick(since_last(&chat, "Sam"), "Sam");
        assert_eq!(
            texts(&picks),
            [
                "Bad news: rain is forecast for Saturday. Can we move it to Sunday?",
                "Sunday is fine. Let's say 1pm instead of 11am, same park.",
                "Agreed, Sunday at 1pm. I'll bring sandwiches.",
                "I'll bring lemonade and a blanket.",
                "Sam, can you still come on Sunday? And could you bring a ball too?",
            ]
        );
        assert_eq!(picks[4].reason, Reason::AsksReader);
        assert_eq!(picks[1].reason, Reason::Change);
    }

    #[test]
    fn a_please_to_the_reader_is_asking_and_done_things_are_news() {
        let chat = vec![
            msg("Mom", "I ordered the cake, it's chocolate."),
            msg("Ben", "lol"),
            msg("Mom", "Dad, please pick up grandma."),
        ];
        let picks = pick(&chat, "dad");
        assert_eq!(texts(&picks), ["I ordered the cake, it's chocolate.", "Dad, please pick up grandma."]);
        assert_eq!((picks[0].reason, picks[1].reason), (Reason::Decision, Reason::AsksReader));
    }

    #[test]
    fn a_quiet_chat_gives_its_newest_messages() {
        let chat = vec![msg("A", "hello there friends"), msg("B", "lol"), msg("C", "what a view from here")];
        let picks = pick(&chat, "Z");
        assert_eq!(texts(&picks), ["hello there friends", "what a view from here"]);
        assert!(picks.iter().all(|p| p.reason == Reason::Recent));
        assert!(pick(&[msg("A", "ok"), msg("B", "  ")], "Z").is_empty());
    }

    #[test]
    fn at_most_five_points_newest_first_among_equals() {
        let chat: Vec<ChatMessage> = (1..=9).map(|i| msg("A", &format!("I'll bring {i} chairs"))).collect();
        let picks = pick(&chat, "Z");
        assert_eq!(picks.len(), MAX_POINTS);
        assert_eq!(picks[0].message.text, "I'll bring 5 chairs");
    }
}
