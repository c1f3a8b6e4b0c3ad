//! `pp-host-dev eval`: every case of an evaluation set (`examples/eval/`) through the release's
//! components on the real model, and the same input through the model with one plain prompt (the
//! naive baseline: the feature's own one-line summary as the instruction), scored alike, so the
//! figures are comparable within one run. Per feature and split (tuning / held-out): recall of
//! the facts a good answer must keep, invented facts (numbers, names, days absent from the input),
//! stale facts (values a later message replaced), style checks (a `style` parameter), answers
//! that only repeat the input, length, model calls, tokens, latency.

use anyhow::{Context, Result};
use pp_host::inference::{GenerationParams, Role, TextGenerator, Turn};
use pp_host::sandbox::Sandbox;
use pp_plaintext::{FeatureRequest, ParamValue, PartValue};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One case file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    split: String,
    #[serde(default)]
    note: String,
    request: serde_json::Value,
    must: Vec<Fact>,
    must_not: Vec<String>,
}

/// A fact, or several accepted spellings of it.
#[derive(Deserialize)]
#[serde(untagged)]
enum Fact {
    One(String),
    AnyOf(Vec<String>),
}

impl Fact {
    fn found_in(&self, lower: &str) -> bool {
        match self {
            Fact::One(text) => lower.contains(&text.to_lowercase()),
            Fact::AnyOf(texts) => texts.iter().any(|text| lower.contains(&text.to_lowercase())),
        }
    }
}

struct Case {
    name: String,
    file: CaseFile,
    request: FeatureRequest,
}

/// Sums for one (feature, split, system) line.
#[derive(Default)]
struct Tally {
    cases: usize,
    errors: usize,
    must: usize,
    kept: usize,
    invented: usize,
    stale: usize,
    styled: usize,
    style_passed: usize,
    unchanged: usize,
    chars: usize,
    calls: u64,
    tokens: u64,
    latencies: Vec<Duration>,
}

/// One answer's score.
struct Score {
    kept: usize,
    invented: Vec<String>,
    stale: usize,
    style: Option<bool>,
    unchanged: bool,
}

/// Which cases to run, and how.
pub struct Selection<'a> {
    /// Only this feature's cases.
    pub feature: Option<&'a str>,
    /// Only this split's cases ("tuning" while tuning: the held-out third stays unseen).
    pub split: Option<&'a str>,
    /// Skip the baseline (quicker rounds while tuning; its figures are then left out).
    pub no_baseline: bool,
    /// Print every answer.
    pub show: bool,
}

pub fn run(sandbox: &Sandbox, generator: Arc<dyn TextGenerator>, dir: &Path, only: &Selection) -> Result<()> {
    let show = only.show;
    let cases = load(dir, only.feature, only.split)?;
    anyhow::ensure!(!cases.is_empty(), "no cases in {}", dir.display());
    eprintln!(
        "eval: {} cases from {}, each through its component and through the baseline prompt",
        cases.len(),
        dir.display()
    );
    let mut tallies: BTreeMap<(String, String, &str), Tally> = BTreeMap::new();
    for (i, case) in cases.iter().enumerate() {
        let feature = case.request.feature.clone();
        let split = case.file.split.clone();
        let started = Instant::now();
        let result = sandbox.handle(&case.request);
        let elapsed = started.elapsed();
        let tally = tallies.entry((feature.clone(), split.clone(), "component")).or_default();
        let answer = match result {
            Ok(response) => {
                tally.calls += u64::from(response.model_calls);
                tally.tokens += u64::from(response.prompt_tokens + response.completion_tokens);
                Some(response.text())
            }
            Err(error) => {
                eprintln!("  {}: error: {error}", case.name);
                None
            }
        };
        let line = record(tally, case, answer.as_deref(), elapsed);
        if only.no_baseline {
            eprintln!("[{}/{}] {:40} component {line}", i + 1, cases.len(), case.name);
            if show {
                eprintln!("    ({})", case.file.note);
                show_answer("component", answer.as_deref());
            }
            continue;
        }
        let baseline_started = Instant::now();
        let baseline = naive(sandbox, generator.as_ref(), &case.request);
        let baseline_elapsed = baseline_started.elapsed();
        let tally = tallies.entry((feature.clone(), split, "baseline")).or_default();
        let baseline_text = match baseline {
            Ok((text, tokens)) => {
                tally.calls += 1;
                tally.tokens += tokens;
                Some(text)
            }
            Err(why) => {
                eprintln!("  {}: baseline error: {why}", case.name);
                None
            }
        };
        let baseline_line = record(tally, case, baseline_text.as_deref(), baseline_elapsed);
        eprintln!("[{}/{}] {:40} component {line} | baseline {baseline_line}", i + 1, cases.len(), case.name);
        if show {
            eprintln!("    ({})", case.file.note);
            show_answer("component", answer.as_deref());
            show_answer("baseline", baseline_text.as_deref());
        }
    }
    print_table(&tallies);
    Ok(())
}

fn load(dir: &Path, only: Option<&str>, split: Option<&str>) -> Result<Vec<Case>> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    paths.retain(|path| path.extension().is_some_and(|e| e == "json"));
    paths.sort();
    let mut cases = Vec::new();
    for path in paths {
        let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let file: CaseFile = serde_json::from_slice(&text).with_context(|| format!("{}", path.display()))?;
        anyhow::ensure!(
            file.split == "tuning" || file.split == "held-out",
            "{}: split is \"tuning\" or \"held-out\"",
            path.display()
        );
        let request = FeatureRequest::from_json(&serde_json::to_vec(&file.request)?)
            .with_context(|| format!("{}: the request", path.display()))?;
        if only.is_some_and(|feature| feature != request.feature)
            || split.is_some_and(|split| split != file.split)
        {
            continue;
        }
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("?").to_string();
        cases.push(Case { name, file, request });
    }
    Ok(cases)
}

/// An answer under `--show`, its lines indented under the first.
fn show_answer(label: &str, answer: Option<&str>) {
    let label = format!("    {label}: ");
    let indent = format!("\n{}", " ".repeat(label.len()));
    eprintln!("{label}{}", answer.unwrap_or("(error)").replace('\n', &indent));
}

/// Adds one answer (or an error) to `tally`; returns a short line for the progress output.
fn record(tally: &mut Tally, case: &Case, answer: Option<&str>, elapsed: Duration) -> String {
    tally.cases += 1;
    tally.must += case.file.must.len();
    tally.latencies.push(elapsed);
    let Some(answer) = answer else {
        tally.errors += 1;
        return "error".into();
    };
    let score = score(case, answer);
    tally.kept += score.kept;
    tally.invented += score.invented.len();
    tally.stale += score.stale;
    tally.chars += answer.chars().count();
    if let Some(passed) = score.style {
        tally.styled += 1;
        tally.style_passed += usize::from(passed);
    }
    tally.unchanged += usize::from(score.unchanged);
    let invented = if score.invented.is_empty() { String::new() } else { format!(" {:?}", score.invented) };
    format!(
        "kept {}/{} stale {} invented {}{invented} {} ms",
        score.kept,
        case.file.must.len(),
        score.stale,
        score.invented.len(),
        elapsed.as_millis()
    )
}

fn score(case: &Case, answer: &str) -> Score {
    let lower = answer.to_lowercase();
    let input = input_text(&case.request);
    let kept = case.file.must.iter().filter(|fact| fact.found_in(&lower)).count();
    let stale = case.file.must_not.iter().filter(|bad| lower.contains(&bad.to_lowercase())).count();
    let invented = invented(&input, answer);
    let style = match case.request.params.get("style") {
        Some(ParamValue::Choice(style)) => {
            Some(style_ok(style, &input, answer, kept == case.file.must.len() && stale == 0))
        }
        _ => None,
    };
    // The input given back as the answer (a rewrite that changed nothing) is no success.
    let unchanged = words(&input) == words(answer);
    Score { kept, invented, stale, style, unchanged }
}

/// The style a rewrite asked for, checked on its answer.
fn style_ok(style: &str, draft: &str, answer: &str, facts_right: bool) -> bool {
    const SLANG: &[&str] =
        &["u", "ur", "thx", "pls", "plz", "gonna", "wanna", "lol", "btw", "hey", "yeah", "ya", "cuz", "omg"];
    const WARM: &[&str] =
        &["!", "thank", "hope", "happy", "glad", "great", "love", "please", "hi ", "hello", ":)"];
    let lower = answer.to_lowercase();
    match style {
        "formal" => !words(answer).split(' ').any(|w| SLANG.contains(&w)),
        "concise" => answer.chars().count() < draft.chars().count(),
        "friendly" => WARM.iter().any(|w| lower.contains(w)),
        // The errors gone (must_not) and the corrections there (must).
        "fix-grammar" => facts_right,
        _ => false,
    }
}

/// Numbers, capitalized names (not starting a sentence) and day names in `answer` that `input`
/// does not have (a name counts as there when the input contains it anywhere, even in a word).
fn invented(input: &str, answer: &str) -> Vec<String> {
    const DAYS: &[&str] = &[
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
        "tomorrow",
        "tonight",
    ];
    // A word of the input's, or part of one ("PM" of "3pm"): not invented.
    let input_lower = input.to_lowercase();
    let input_digits: std::collections::BTreeSet<String> =
        input.split(|c: char| !c.is_ascii_digit()).filter(|n| !n.is_empty()).map(String::from).collect();
    let mut found = Vec::new();
    let mut sentence_start = true;
    for raw in answer.split_whitespace() {
        let bare: String = raw.chars().filter(|c| c.is_alphanumeric() || *c == '\'').collect();
        let bare = bare.trim_end_matches("'s").to_string();
        for number in raw.split(|c: char| !c.is_ascii_digit()).filter(|n| !n.is_empty()) {
            if !input_digits.contains(number) {
                found.push(number.to_string());
            }
        }
        let lower = bare.to_lowercase();
        let name = bare.chars().next().is_some_and(char::is_uppercase)
            && !sentence_start
            && bare.len() > 1
            && bare != "I"
            && !bare.starts_with("I'");
        if (name || DAYS.contains(&lower.as_str()))
            && !lower.chars().any(|c| c.is_ascii_digit())
            && !input_lower.contains(&lower)
        {
            found.push(bare.clone());
        }
        sentence_start = raw.ends_with(['.', '!', '?', ':']) || raw.starts_with('-');
    }
    found.sort();
    found.dedup();
    found
}

fn words(text: &str) -> String {
    text.to_lowercase()
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The request's user text as one string: text parts as they are, chats as `Author: text` lines.
fn input_text(request: &FeatureRequest) -> String {
    let mut out = Vec::new();
    for value in request.parts.values() {
        match value {
            PartValue::Text(text) => out.push(text.clone()),
            PartValue::Messages(messages) => {
                out.extend(messages.iter().map(|m| format!("{}: {}", m.author, m.text)));
            }
        }
    }
    out.join("\n")
}

/// The naive baseline: the feature's summary as the instruction, the input after it, one greedy
/// call; the oldest input is cut until the prompt fits the context.
fn naive(
    sandbox: &Sandbox,
    generator: &dyn TextGenerator,
    request: &FeatureRequest,
) -> Result<(String, u64), String> {
    let descriptor = sandbox.descriptor(&request.feature).ok_or("not in the release")?;
    let params: Vec<String> = request
        .params
        .iter()
        .map(|(name, value)| match value {
            ParamValue::Choice(choice) => format!("{name}: {choice}"),
            ParamValue::Number(n) => format!("{name}: {n}"),
            ParamValue::Flag(flag) => format!("{name}: {flag}"),
        })
        .collect();
    let instruction = if params.is_empty() {
        format!("{}.", descriptor.summary)
    } else {
        format!("{} ({}).", descriptor.summary, params.join(", "))
    };
    let mut input = input_text(request);
    let max_tokens = 256;
    loop {
        let turns = vec![
            Turn { role: Role::System, content: "You are a helpful assistant.".into() },
            Turn { role: Role::User, content: format!("{instruction}\n\n{input}") },
        ];
        let needed = generator.count_tokens(&turns).map_err(|e| e.to_string())?;
        if needed + max_tokens > generator.context_tokens() && input.len() > 64 {
            let mut cut = input.len() / 10;
            while !input.is_char_boundary(cut) {
                cut += 1;
            }
            input = input[cut..].to_string();
            continue;
        }
        let params =
            GenerationParams { max_tokens, temperature: 0.0, seed: 0, stop: vec![], repeat_penalty: 1.2 };
        let completion = generator.generate(&turns, &params).map_err(|e| e.to_string())?;
        let tokens = u64::from(completion.prompt_tokens + completion.completion_tokens);
        return Ok((completion.text.trim().to_string(), tokens));
    }
}

fn print_table(tallies: &BTreeMap<(String, String, &str), Tally>) {
    println!(
        "{:14} {:9} {:10} {:>5} {:>6} {:>8} {:>8} {:>6} {:>7} {:>9} {:>7} {:>6} {:>7} {:>8} {:>8}",
        "feature",
        "split",
        "system",
        "cases",
        "errors",
        "recall",
        "invented",
        "stale",
        "style",
        "unchanged",
        "chars",
        "calls",
        "tokens",
        "p50 ms",
        "p95 ms"
    );
    for ((feature, split, system), t) in tallies {
        let mut latencies = t.latencies.clone();
        latencies.sort();
        let at = |p: f64| {
            latencies.get(((latencies.len() as f64 - 1.0) * p).round() as usize).map_or(0, |d| d.as_millis())
        };
        let answered = (t.cases - t.errors).max(1);
        let recall = if t.must == 0 {
            "-".to_string()
        } else {
            format!("{:.0}%", 100.0 * t.kept as f64 / t.must as f64)
        };
        let style = if t.styled == 0 { "-".to_string() } else { format!("{}/{}", t.style_passed, t.styled) };
        println!(
            "{:14} {:9} {:10} {:>5} {:>6} {:>8} {:>8} {:>6} {:>7} {:>9} {:>7} {:>6.1} {:>7} {:>8} {:>8}",
            feature,
            split,
            system,
            t.cases,
            t.errors,
            recall,
            t.invented,
            t.stale,
            style,
            t.unchanged,
            t.chars / answered,
            t.calls as f64 / answered as f64,
            t.tokens / answered as u64,
            at(0.5),
            at(0.95)
        );
    }
    println!("recall: must-facts kept (errors count as lost); invented, stale, unchanged: totals; chars, calls, tokens: per answer");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(request: serde_json::Value, must: serde_json::Value, must_not: &[&str]) -> Case {
        let file: CaseFile = serde_json::from_value(serde_json::json!({
            "split": "tuning", "request": request, "must": must, "must_not": must_not
        }))
        .unwrap();
        let request = FeatureRequest::from_json(&serde_json::to_vec(&file.request).unwrap()).unwrap();
        Case { name: "test".into(), file, request }
    }

    #[test]
    fn facts_kept_stale_and_invented_are_counted() {
        let chat = serde_json::json!({"feature": "any", "parts": {"chat": [
            {"author": "Maya", "text": "Picnic at 11am on Saturday"},
            {"author": "Tom", "text": "Rain: move it to Sunday at 1pm"}
        ]}});
        let case = case(chat, serde_json::json!(["sunday", ["1pm", "1 pm"]]), &["11am"]);
        let good = score(&case, "- The picnic moved to Sunday at 1 PM.");
        assert_eq!((good.kept, good.stale, good.invented.len()), (2, 0, 0));
        let bad = score(&case, "- Picnic at 11am on Saturday with Lena, 20 people.");
        assert_eq!((bad.kept, bad.stale), (0, 1));
        assert_eq!(bad.invented, ["20", "Lena"]);
        assert!(score(&case, "Then I'll be at Sunday 1pm.").invented.is_empty(), "I'll is no name");
    }

    #[test]
    fn styles_and_unchanged_drafts_are_checked() {
        let draft = serde_json::json!({"feature": "any", "parts": {"draft": "hey u coming at 5?"}, "params": {"style": "formal"}});
        let case = case(draft, serde_json::json!(["5"]), &[]);
        assert_eq!(score(&case, "Will you be coming at 5?").style, Some(true));
        assert_eq!(score(&case, "Hey, u coming at 5?").style, Some(false));
        assert!(score(&case, "Hey u coming at 5").unchanged);
        assert!(style_ok("concise", "a long draft here", "short", true));
        assert!(!style_ok("friendly", "x", "Noted.", true));
    }
}
