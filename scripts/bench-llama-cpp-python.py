#!/usr/bin/env python3
"""The peer measurement for `pp-host-dev bench model`: the same GGUF, prompt and thread count through
llama-cpp-python (an independent build of llama.cpp). Prints JSON figures on stdout.

usage: bench-llama-cpp-python.py MODEL THREADS NEW_TOKENS   (prompt from PP_BENCH_SYSTEM / PP_BENCH_USER)
"""
import json
import os
import resource
import sys
import time

try:
    from llama_cpp import Llama
except ImportError:
    sys.exit("llama-cpp-python is not installed (scripts/setup-bench installs it)")

model, threads, new_tokens = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
# The model's own chat template is ChatML; the host applies it through llama.cpp the same way.
prompt = (
    f"<|im_start|>system\n{os.environ['PP_BENCH_SYSTEM']}<|im_end|>\n"
    f"<|im_start|>user\n{os.environ['PP_BENCH_USER']}<|im_end|>\n<|im_start|>assistant\n"
)

started = time.perf_counter()
llm = Llama(model_path=model, n_ctx=2048, n_batch=2048, n_threads=threads, n_threads_batch=threads, last_n_tokens_size=64, verbose=False)
load_s = time.perf_counter() - started

tokens = llm.tokenize(prompt.encode(), add_bos=False, special=True)
llm.eval(tokens[:4])  # warm-up, as the host's benchmark does
llm.reset()

started = time.perf_counter()
llm.eval(tokens)
prompt_s = time.perf_counter() - started

generated = 0
started = time.perf_counter()
for _ in range(new_tokens):
    token = llm.sample(temp=0.0, repeat_penalty=1.2)
    if llm.token_eos() == token or token == llm.tokenize(b"<|im_end|>", add_bos=False, special=True)[0]:
        break
    llm.eval([token])
    generated += 1
generation_s = time.perf_counter() - started

print(json.dumps({
    "load_s": load_s,
    "prompt_tokens": len(tokens),
    "prompt_tps": len(tokens) / prompt_s,
    "generated_tokens": generated,
    "generation_tps": generated / generation_s if generated else 0.0,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
