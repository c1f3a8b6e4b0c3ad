//! `bench model`: load time, prompt and generation tokens/s and peak RSS of the host's llama.cpp,
//! beside llama-cpp-python on the same GGUF, prompt and threads.

use crate::ModelArgs;
use anyhow::{Context, Result};
use pp_host::artifacts::ArtifactDir;
use pp_host::inference::{GenerationParams, Role, Turn};
use pp_host::llama::{default_model_dir, LlamaGenerator};
use pp_vocab::policy::ReleasePolicy;
use std::process::Command;
use std::time::Instant;

/// A prompt of about 270 tokens, as in the shared measurements.
const BENCH_PROMPT: &str =
    "You are a helpful assistant. Read the notes and then write a long, detailed story \
    about the trip they describe, with every person and place in it.";
const BENCH_NOTES: &str = "Notes: Ana, Ben and Chloe plan a trip to the lake on Saturday. They meet at 9 at the \
    station. Ben brings the tent and the stove, Chloe the food, Ana the maps and the first aid kit. The train \
    leaves at 9:20 and arrives at 11. From the station they walk two hours to the camp site by the old mill. \
    In the afternoon they want to swim, and in the evening they cook pasta and tell stories by the fire. On \
    Sunday they walk back along the river, stop for lunch at the small cafe in the village, and take the 4 pm \
    train home. If it rains they stay in the hostel near the station instead, which costs 25 euros each. \
    Chloe asks everyone to send her money for the food by Thursday. Ben reminds them to bring warm clothes, \
    because the nights by the lake are cold even in summer. Ana says her cousin Dan may join them on Sunday.";

pub fn model_speed(policy: &std::path::Path, args: &ModelArgs, tokens: u32) -> Result<()> {
    let policy = ReleasePolicy::load(policy)?;
    let dir = args.model_dir.clone().unwrap_or_else(default_model_dir);
    let models = ArtifactDir::open(&dir).context("no model directory: run `scripts/fetch-model`")?;
    let threads = policy.model.threads;

    let started = Instant::now();
    let generator = LlamaGenerator::load(&models, &policy.model)?;
    let load = started.elapsed();
    let prompt = vec![
        Turn { role: Role::System, content: BENCH_PROMPT.into() },
        Turn { role: Role::User, content: BENCH_NOTES.into() },
    ];
    // Ignore end-of-sequence is not offered, so ask for a long story and count what comes.
    let params = GenerationParams { max_tokens: tokens, ..Default::default() };
    let _warm =
        generator.generate_timed(&prompt, &GenerationParams { max_tokens: 4, ..Default::default() })?;
    let (completion, timings) = generator.generate_timed(&prompt, &params)?;
    let ours = Speeds {
        load_s: load.as_secs_f64(),
        prompt_tps: completion.prompt_tokens as f64 / timings.prompt.as_secs_f64(),
        generation_tps: completion.completion_tokens as f64 / timings.generation.as_secs_f64(),
        peak_rss_mb: peak_rss_mb(),
    };
    println!(
        "model: {} ({} threads), prompt {} tokens, generated {} tokens",
        policy.model.name, threads, completion.prompt_tokens, completion.completion_tokens
    );
    println!("  {:28} {:>8} {:>12} {:>12} {:>10}", "", "load s", "prompt tok/s", "gen tok/s", "peak RSS MB");
    ours.print("pp-host (llama-cpp-2)");

    let model_file = dir.join(&policy.model.file);
    match llama_cpp_python(&model_file, threads, tokens) {
        Ok(theirs) => {
            theirs.print("llama-cpp-python (peer)");
            println!(
                "  ratio ours/peer: prompt {:.2}x, generation {:.2}x   (target ≥ 0.95x on both)",
                ours.prompt_tps / theirs.prompt_tps,
                ours.generation_tps / theirs.generation_tps
            );
        }
        Err(why) => println!("  llama-cpp-python: not measured ({why:#})"),
    }
    Ok(())
}

struct Speeds {
    load_s: f64,
    prompt_tps: f64,
    generation_tps: f64,
    peak_rss_mb: f64,
}

impl Speeds {
    fn print(&self, label: &str) {
        println!(
            "  {label:28} {:8.2} {:12.1} {:12.1} {:10.0}",
            self.load_s, self.prompt_tps, self.generation_tps, self.peak_rss_mb
        );
    }
}

/// Peak resident memory of this process (VmHWM), in MB.
fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

/// Runs the same measurement with llama-cpp-python, an independent build of llama.cpp.
fn llama_cpp_python(model: &std::path::Path, threads: u32, tokens: u32) -> Result<Speeds> {
    let output = Command::new("python3")
        .arg("scripts/bench-llama-cpp-python.py")
        .arg(model)
        .args([threads.to_string(), tokens.to_string()])
        .env("PP_BENCH_SYSTEM", BENCH_PROMPT)
        .env("PP_BENCH_USER", BENCH_NOTES)
        .output()
        .context("running python3")?;
    if !output.status.success() {
        anyhow::bail!("{}", String::from_utf8_lossy(&output.stderr).lines().last().unwrap_or("failed"));
    }
    let figures: serde_json::Value = serde_json::from_slice(&output.stdout).context("reading its figures")?;
    let get = |key: &str| figures[key].as_f64().with_context(|| format!("no {key} in its figures"));
    Ok(Speeds {
        load_s: get("load_s")?,
        prompt_tps: get("prompt_tps")?,
        generation_tps: get("generation_tps")?,
        peak_rss_mb: get("peak_rss_mb")?,
    })
}
