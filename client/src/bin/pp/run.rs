//! `pp features` and `pp run`: any feature of the release, from its descriptor.

use anyhow::{bail, Context, Result};
use pp_plaintext::answer::Piece;
use pp_plaintext::{ChatMessage, FeatureRequest, FeatureResponse, ParamValue};
use pp_vocab::feature::{Descriptor, ParamKind, PartKind};

/// Largest file a `--part NAME=@FILE` reads.
const MAX_PART_FILE_BYTES: u64 = 512 * 1024;

/// Each feature with its parts and parameters, for people.
pub fn describe_features(features: &[Descriptor]) -> String {
    let mut out = String::new();
    for feature in features {
        out.push_str(&format!("{}: {}\n", feature.name, feature.summary));
        for part in &feature.parts {
            let need = if part.required { "required" } else { "optional" };
            let kind = match part.kind {
                PartKind::Text => "text",
                PartKind::Messages => "messages",
            };
            out.push_str(&format!("  --part {}=…   {kind}, {need}: {}\n", part.name, part.summary));
        }
        for param in &feature.params {
            let need = if param.required { "required" } else { "optional" };
            let kind = match &param.kind {
                ParamKind::Flag => "true or false".to_string(),
                ParamKind::Number { min, max } => format!("{min}..={max}"),
                ParamKind::Choice(choices) => choices.join(" | "),
            };
            out.push_str(&format!("  --param {}=…  {kind}, {need}: {}\n", param.name, param.summary));
        }
        let outputs: Vec<&str> = feature.outputs.iter().map(|o| o.name.as_str()).collect();
        out.push_str(&format!("  answers: {}\n", outputs.join(", ")));
    }
    out
}

/// A request from `--part` and `--param` arguments; each value read as its descriptor says (a
/// guess without one: a JSON list is messages, anything else text).
pub fn build_request(
    feature: &str,
    descriptor: Option<&Descriptor>,
    parts: &[String],
    params: &[String],
) -> Result<FeatureRequest> {
    let mut request = FeatureRequest::new(feature);
    for argument in parts {
        let (name, value) = split(argument, "--part")?;
        let text = match value.strip_prefix('@') {
            Some(file) => read_part_file(file)?,
            None => value.to_string(),
        };
        let kind = descriptor.and_then(|d| d.part(name)).map(|p| p.kind);
        let looks_like_messages = text.trim_start().starts_with('[');
        request = match kind {
            Some(PartKind::Messages) => request.messages(name, messages(&text)?),
            None if looks_like_messages => request.messages(name, messages(&text)?),
            _ => request.text(name, text.trim()),
        };
    }
    for argument in params {
        let (name, value) = split(argument, "--param")?;
        let kind = descriptor.and_then(|d| d.param(name)).map(|p| &p.kind);
        let value = match kind {
            Some(ParamKind::Flag) => ParamValue::Flag(
                value.parse().with_context(|| format!("--param {name}: true or false, not {value:?}"))?,
            ),
            Some(ParamKind::Number { .. }) => ParamValue::Number(
                value.parse().with_context(|| format!("--param {name}: an integer, not {value:?}"))?,
            ),
            Some(ParamKind::Choice(_)) => ParamValue::Choice(value.into()),
            None => guess_param(value),
        };
        request = request.param(name, value);
    }
    Ok(request)
}

fn split<'a>(argument: &'a str, flag: &str) -> Result<(&'a str, &'a str)> {
    argument.split_once('=').with_context(|| format!("{flag} takes NAME=VALUE, not {argument:?}"))
}

fn read_part_file(file: &str) -> Result<String> {
    let size = std::fs::metadata(file).with_context(|| format!("reading {file}"))?.len();
    if size > MAX_PART_FILE_BYTES {
        bail!("{file} has {size} bytes; pp reads part files of at most {MAX_PART_FILE_BYTES}");
    }
    std::fs::read_to_string(file).with_context(|| format!("reading {file} (a UTF-8 text file)"))
}

fn guess_param(value: &str) -> ParamValue {
    match value {
        "true" => ParamValue::Flag(true),
        "false" => ParamValue::Flag(false),
        _ => value.parse().map(ParamValue::Number).unwrap_or_else(|_| ParamValue::Choice(value.into())),
    }
}

/// A messages part: a JSON list of {author, text}, or `Name: message` lines.
fn messages(text: &str) -> Result<Vec<ChatMessage>> {
    if text.trim_start().starts_with('[') {
        return serde_json::from_str(text).context("a JSON list of {\"author\", \"text\"}");
    }
    Ok(chat_lines(text))
}

/// `Name: message` per line (a line without a colon has no author).
pub fn chat_lines(text: &str) -> Vec<ChatMessage> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| match line.split_once(':') {
            Some((author, message)) => {
                ChatMessage { author: author.trim().into(), text: message.trim().into() }
            }
            None => ChatMessage { author: String::new(), text: line.trim().into() },
        })
        .collect()
}

/// The answer for people: one part as it is; several, each under its name (repeated names
/// numbered: `reply 1`, `reply 2`).
pub fn show_answer(response: &FeatureResponse) -> String {
    if response.parts.len() == 1 {
        return response.parts[0].text.clone();
    }
    let mut out = Vec::new();
    for (i, part) in response.parts.iter().enumerate() {
        let same = response.parts.iter().filter(|p| p.name == part.name).count();
        let label = if same > 1 {
            let n = response.parts[..=i].iter().filter(|p| p.name == part.name).count();
            format!("{} {n}", part.name)
        } else {
            part.name.clone()
        };
        out.push(format!("[{label}]\n{}", part.text));
    }
    out.join("\n\n")
}

/// Whether stdout is in the middle of a streamed answer's line: a progress line on stderr then
/// starts a new line first, so a terminal does not show it glued to the answer.
static MID_LINE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A progress line, on stderr.
pub fn say(line: &str) {
    if MID_LINE.swap(false, std::sync::atomic::Ordering::SeqCst) {
        println!();
    }
    eprintln!("pp: {line}");
}

/// Prints a streamed answer as it comes: text as it is (parts apart by a blank line), or with
/// `--json` one `{"piece": …}` line per piece.
pub struct PiecePrinter {
    json: bool,
    pieces: usize,
}

impl PiecePrinter {
    pub fn new(json: bool) -> Self {
        PiecePrinter { json, pieces: 0 }
    }

    pub fn print(&mut self, piece: &Piece) {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        if self.json {
            let _ = writeln!(out, "{}", serde_json::json!({ "piece": piece }));
        } else {
            if piece.part.is_some() && self.pieces > 0 {
                let _ = write!(out, "\n\n");
            }
            let _ = write!(out, "{}", piece.text);
            if !piece.text.is_empty() {
                MID_LINE.store(!piece.text.ends_with('\n'), std::sync::atomic::Ordering::SeqCst);
            }
        }
        let _ = out.flush();
        self.pieces += 1;
    }

    /// Ends the text's last line (the answer itself ends without one); after pieces of an
    /// answer that failed, says on stdout too that what it shows is not an answer.
    pub fn end(&self, whole: bool) {
        if self.json || self.pieces == 0 {
            return;
        }
        if MID_LINE.swap(false, std::sync::atomic::Ordering::SeqCst) {
            println!();
        }
        if !whole {
            println!("[incomplete: the answer broke off; the text above is not an answer]");
        }
    }
}
