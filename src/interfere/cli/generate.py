"""`interfere generate [run=<id>|ckpt=<path>] prompt="..." [strategy=...] [--json]`: text from a trained model."""

from __future__ import annotations

import contextlib
import sys
import time

from interfere.cli.common import add_json, add_overrides, print_json
from interfere.cli.words import RUN_KEYS, load_run, option, parse_words, to_bool, to_float, to_int
from interfere.errors import ConfigError

HELP = "generate text from a language model run (greedy, sampling, top-k, top-p, presets; KV cache)"
DESCRIPTION = """\
Continue a prompt with a text model trained here (run=<id>, ckpt=<path>; runs/latest by default). The
prompt is read as the start of a document. A preset (precise | balanced | creative) fills in strategy,
temperature, top_k and top_p; any of those given explicitly wins. Without preset or strategy the run's
own task.generate.preset is used."""

KEYS = {
    **RUN_KEYS,
    "prompt": "text",
    "max_new_tokens": "N",
    "strategy": "greedy|sample|top_k|top_p",
    "preset": "precise|balanced|creative",
    "temperature": "T",
    "top_k": "K",
    "top_p": "P",
    "seed": "S",
    "samples": "N",
    "use_cache": "true|false",
    "stop_at_eot": "true|false",
}

EPILOG = """\
examples:
  interfere train exp=shakespeare && interfere generate prompt="ROMEO:"
  interfere generate prompt="ROMEO:" strategy=greedy max_new_tokens=100
  interfere generate prompt="To be" preset=creative samples=3 seed=1 --json"""


def add_arguments(p) -> None:
    add_overrides(p, ", ".join(f"{k}=<{v}>" for k, v in KEYS.items()))
    add_json(p)


def run(args) -> int:
    words = parse_words(args.overrides, KEYS, "generate")
    samples = option(words, "samples", 1, to_int, minimum=1)
    max_new = option(words, "max_new_tokens", None, to_int, minimum=0)
    seed = option(words, "seed", None, to_int)
    settings = {"strategy": words.get("strategy"), "temperature": option(words, "temperature", None, to_float),
                "top_k": option(words, "top_k", None, to_int), "top_p": option(words, "top_p", None, to_float),
                "preset": words.get("preset")}
    use_cache, stop_at_eot = option(words, "use_cache", True, to_bool), option(words, "stop_at_eot", False, to_bool)

    from interfere.train.runs import run_dir_of

    with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
        model, task, ckpt = load_run(words)
        if not hasattr(task, "complete"):
            raise ConfigError(f"run {run_dir_of(ckpt).name} is a {type(task).__name__}, which does not generate "
                              "text; `interfere generate` takes a text run (e.g. exp=shakespeare)")
        prompt = words.get("prompt", task.gen_cfg["prompt"])
        first_seed = int(task.gen_cfg["seed"]) if seed is None else seed  # sample i uses first_seed + i
        texts, t0 = [], time.perf_counter()
        for i in range(samples):
            try:
                texts.append(task.complete(model, prompt, max_new_tokens=max_new,
                                           seed=first_seed + i, stop_at_eot=stop_at_eot,
                                           use_cache=use_cache, **settings))
            except ValueError as e:  # a bad strategy / preset / top_k ... names itself
                raise ConfigError(str(e)) from None
        seconds = time.perf_counter() - t0

    if args.json:
        print_json({"run": run_dir_of(ckpt).name, "ckpt": str(ckpt), "prompt": prompt, "samples": texts,
                    "seconds": round(seconds, 3)})
    else:
        for i, text in enumerate(texts):
            if samples > 1:
                print(f"--- sample {i + 1}")
            print(prompt + text)
    return 0
