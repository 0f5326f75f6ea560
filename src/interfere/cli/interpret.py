"""`interfere interpret <tool> [run=<id>|ckpt=<path>|model=smollm2] [--json] [key=value ...]`.

Tools: logit-lens, attention, induction, patch, dla, probe (interfere.analysis). Each runs on a model
trained here (run=/ckpt=, default runs/latest) or a pretrained model (model=smollm2, offline), writes PNGs
under the run's assets/plots/<tool>/ (runs/pretrained/<name>/assets/plots/<tool>/ for a pretrained model),
prints rich tables, or with --json exactly one JSON object on stdout.
"""

from __future__ import annotations

import contextlib
import re
import sys
import time
from pathlib import Path

from interfere.cli.words import RUN_KEYS, load_run, option, parse_words, to_bool, to_float, to_int
from interfere.formatting import first_line
from interfere.errors import ConfigError

HELP = "take a model apart: logit-lens, attention, induction, patch, dla or probe (a run or model=smollm2)"
DESCRIPTION = """\
Interpretability tools on a run's checkpoint (run=<id>, ckpt=<path>; runs/latest by default) or on a
pretrained model loaded offline (model=smollm2). Each writes PNGs under the run's assets/plots/<tool>/
(runs/pretrained/<name>/assets/plots/<tool>/ for a pretrained model) and prints tables, or one JSON
object with --json. Without a prompt the tools use repeated random tokens ([BOS] r r), on which every
model that has learned induction has something to show."""

ELSEWHERE = "give out=<a writable folder> for the plots, or plots=false"  # when the run's folder refuses them
TOOLS = ("logit-lens", "attention", "induction", "patch", "dla", "probe")

COMMON = {
    **RUN_KEYS,
    "model": "pretrained name (smollm2)",
    "seed": "S",
    "out": "plots dir",
    "plots": "true|false",
}
TOOL_KEYS = {
    "logit-lens": {"prompt": "text or ids 3,17,5", "positions": "-1|all|i,j", "k": "N"},
    "attention": {"prompt": "text or ids", "seq_len": "L", "batch": "B", "window": "W", "threshold": "0.5"},
    "induction": {"seq_len": "L", "batch": "B", "top": "N"},
    "patch": {"clean": "prompt", "corrupted": "prompt", "answer": "token", "wrong": "token", "position": "-1",
              "components": "resid,heads,mlp,attn", "seq_len": "L"},
    "dla": {"prompt": "text or ids", "answer": "token", "wrong": "token", "position": "-1", "seq_len": "L"},
    "probe": {"target": "seen_before|in_repeat|position|noise", "hook": "resid_post|resid_pre|attn_out|mlp_out",
              "layers": "all|i,j", "seq_len": "T", "batch": "B"},
}
# What each tool reads when given no input: repeated random token ids ([BOS] r r). A task whose sequences
# follow a layout (a Game of Life board) declares `token_analyses = False`: those ids mean nothing to its
# model, so a tool runs on it only with the inputs named here (None: never; induction and probe are about
# repeats of free tokens).
OWN_INPUT = {"logit-lens": "prompt", "induction": None, "patch": "clean", "dla": "prompt", "probe": None}
DEFAULT_TEXT = "To be, or not to be, that is the"  # the logit lens's prompt for models that read text
PROBE_TARGETS = {"seen_before": "logistic", "in_repeat": "logistic", "position": "ridge", "noise": "ridge"}


def EPILOG() -> str:
    lines = ["keys of every tool: " + ", ".join(f"{k}=<{v}>" for k, v in COMMON.items())]
    for tool, keys in TOOL_KEYS.items():
        lines.append(f"  {tool}: " + ", ".join(f"{k}=<{v}>" for k, v in keys.items()))
    lines += ["examples:",
              "  interfere train exp=induction_toy && interfere interpret induction",
              "  interfere interpret induction model=smollm2 --json",
              "  interfere interpret logit-lens model=smollm2 prompt='The Eiffel Tower is in the city of'",
              "  interfere interpret patch model=smollm2 clean='The Eiffel Tower is in the city of' "
              "corrupted='The Colosseum is in the city of' answer=' Paris' wrong=' Rome'"]
    return "\n".join(lines)


def add_arguments(p) -> None:
    p.add_argument("tool", choices=TOOLS, metavar="<tool>", help=" | ".join(TOOLS))
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="run=<id> | ckpt=<path> | model=smollm2, and the tool's keys (see below)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout and nothing else there")


# ----- argument handling ----------------------------------------------------------------------------------
def _split_argv(argv: list[str]) -> tuple[str, list[str], bool]:
    as_json = "--json" in argv
    rest = [a for a in argv if a != "--json"]
    flags = [a for a in rest if a.startswith("-")]
    if flags:
        raise ConfigError(f"unknown option(s) {' '.join(flags)}; `interfere interpret` takes --json and key=value words")
    tools = [a for a in rest if "=" not in a]
    if len(tools) != 1:
        raise ConfigError(f"give one tool: interfere interpret <{'|'.join(TOOLS)}> [key=value ...]")
    return tools[0], [a for a in rest if "=" in a], as_json


def _parse(tool: str, words: list[str]) -> dict[str, str]:
    if tool not in TOOLS:
        import difflib

        close = [t for t in TOOLS if tool and tool in t] or difflib.get_close_matches(tool, TOOLS, n=1, cutoff=0.4)
        hint = f"did you mean {close[0]}? " if close else ""
        raise ConfigError(f"unknown tool {tool!r}; {hint}choose one of {', '.join(TOOLS)}")
    opts = parse_words(words, {**COMMON, **TOOL_KEYS[tool]}, f"interpret {tool}")
    if sum(k in opts for k in ("run", "ckpt", "model")) > 1:
        raise ConfigError("give one of run=<id>, ckpt=<path> and model=<name>")
    return opts


def _int(opts, key, default, minimum=None):
    return option(opts, key, default, to_int, minimum=minimum)


def _float(opts, key, default):
    return option(opts, key, default, to_float)


def _bool(opts, key, default):
    return option(opts, key, default, to_bool)


_IDS = re.compile(r"^\s*-?\d+(\s*,\s*-?\d+)*\s*$")


def _prompt(value: str | None):
    """Comma-separated integers are token ids; anything else is text."""
    if value is None:
        return None
    if _IDS.match(value):
        return [int(v) for v in value.split(",")]
    return value


def _token(model, value: str | None):
    """An answer token: an integer id for models without a tokenizer (or when it is all digits), else text."""
    if value is None or value == "":
        return None
    if getattr(model, "tokenizer", None) is None:
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"this model has no tokenizer: give the token as an id, not {value!r}") from None
    return value


# ----- model loading --------------------------------------------------------------------------------------
class Target:
    """The model to analyse, where its pictures go, and what the tools need to know about its inputs."""

    def __init__(self, model, name: str, plots_dir: Path, bos: int | None, vocab: tuple[int, int] | None,
                 kind: str, run_dir: Path | None = None, task=None):
        self.model, self.name, self.plots_dir, self.bos, self.vocab = model, name, plots_dir, bos, vocab
        self.kind, self.run_dir, self.task = kind, run_dir, task


_PRETRAINED: dict[tuple[str, str], object] = {}  # loaded once per process (tests, menus run several tools)


def _load(opts) -> Target:
    runs_dir = opts.get("runs_dir", "runs")
    device = opts.get("device")
    if "model" in opts:
        from interfere.model.pretrained import load_pretrained, spec

        name = spec(opts["model"]).name
        key = (name, device or "cpu")
        if key not in _PRETRAINED:
            _PRETRAINED.clear()  # one pretrained model in memory at a time
            _PRETRAINED[key] = load_pretrained(name, device=device or "cpu")
        model = _PRETRAINED[key]
        from interfere.analysis.common import bos_id
        from interfere.analysis.induction import default_vocab_range

        return Target(model, name, Path(runs_dir) / "pretrained" / name / "assets" / "plots", bos_id(model),
                      default_vocab_range(model), "pretrained")
    from interfere.analysis.induction import default_vocab_range
    from interfere.train.runs import run_dir_of

    model, task, ckpt = load_run(opts)
    if getattr(model, "tokenizer", None) is None and getattr(task, "tokenizer", None) is not None:
        model.tokenizer = task.tokenizer
    bos = getattr(task, "bos_id", None)  # a task that starts its sequences with a BOS says which
    vocab = default_vocab_range(model)
    if getattr(task, "vocab_size", None):
        vocab = (vocab[0], min(vocab[1], int(task.vocab_size)))
    run_dir = run_dir_of(ckpt)
    return Target(model, run_dir.name, run_dir / "assets" / "plots", bos, vocab, "run", run_dir, task)


def _check_fits(tool: str, t: Target, opts) -> None:
    """Refuse a tool that would analyse made-up token ids of a task whose model never saw free tokens."""
    if t.task is None or getattr(t.task, "token_analyses", True) or tool not in OWN_INPUT:
        return
    if OWN_INPUT[tool] is not None and OWN_INPUT[tool] in opts:
        return
    name = getattr(t.task, "name", type(t.task).__name__)
    fits = ["attention"] + [f"{k} {v}=<ids>" for k, v in OWN_INPUT.items() if v]
    more = "; and `interfere explore life <tool>` tests the Game of Life hypotheses" if name == "life" else ""
    raise ConfigError(f"`interpret {tool}` would run on random token ids, which mean nothing to {t.name} (a {name} "
                      f"run: its sequences follow the task's layout); tools that fit it: {', '.join(fits)}{more}")


def _n_ctx(model) -> int:
    return int(getattr(model.cfg, "n_ctx", 0) or 10**9)


def _default_seq_len(t: Target, opts, cap: int = 50) -> int:
    offset = 0 if t.bos is None else 1
    room = (_n_ctx(t.model) - offset) // 2
    if room < 2:
        raise ConfigError(f"the model's context ({_n_ctx(t.model)} tokens) is too short for repeated sequences")
    return _int(opts, "seq_len", min(cap, room), 2)


def _repeated(t: Target, L: int, batch: int, seed: int):
    from interfere.analysis.common import device_of
    from interfere.analysis.induction import repeated_tokens

    return repeated_tokens(batch, L, t.vocab, t.bos, seed, device_of(t.model))


def _patch_pair(t: Target, L: int, seed: int):
    """[BOS] r r[:k] vs [BOS] r' r[:k] where r' differs from r at k: the answer is r[k] by induction, else x."""
    import torch

    r = _repeated(t, L, 1, seed)
    offset = 0 if t.bos is None else 1
    k = L // 2
    clean = r[:, : offset + L + k]
    corrupted = clean.clone()
    answer = int(clean[0, offset + k])
    g = torch.Generator().manual_seed(seed + 1)
    low, high = t.vocab
    wrong = answer
    used = set(clean[0].tolist())
    while wrong in used:
        wrong = int(torch.randint(low, high, (1,), generator=g))
    corrupted[0, offset + k] = wrong
    return clean, corrupted, answer, wrong


# ----- the tools ------------------------------------------------------------------------------------------
def _logit_lens(t: Target, opts, out: Path | None):
    from interfere.analysis import lens, plots, tables

    prompt = _prompt(opts.get("prompt"))
    if prompt is None:
        if getattr(t.model, "tokenizer", None) is not None:
            prompt = DEFAULT_TEXT
        else:
            prompt = _repeated(t, _default_seq_len(t, opts, 16), 1, _int(opts, "seed", 0))
    r = lens.logit_lens(t.model, prompt, positions=opts.get("positions"), k=_int(opts, "k", 5, 1))
    paths = plots.plot_lens(r, out) if out else []
    return r.to_json(), tables.lens_tables(r, min(3, r.top_ids.shape[-1])), paths


def _attention(t: Target, opts, out: Path | None):
    from interfere.analysis import attention, plots, tables

    prompt = _prompt(opts.get("prompt"))
    tokens = prompt if prompt is not None else _repeated(t, _default_seq_len(t, opts, 32), _int(opts, "batch", 8, 1),
                                                         _int(opts, "seed", 0))
    from interfere.analysis.common import to_tokens

    toks = to_tokens(t.model, tokens)
    mask = getattr(t.model, "layout_attn_mask", None)  # a HookedGPT whose task masks attention
    if mask is not None:
        mask = mask[: toks.shape[1], : toks.shape[1]].cpu()
    r = attention.analyze_attention(t.model, toks, window=_int(opts, "window", 3, 0),
                                    threshold=_float(opts, "threshold", 0.5), attn_mask=mask)
    paths = plots.plot_attention(r, out) if out else []
    return r.to_json(), tables.attention_tables(r), paths


def _induction(t: Target, opts, out: Path | None):
    from interfere.analysis import induction, plots, tables

    L = _default_seq_len(t, opts, 50)
    r = induction.induction_analysis(t.model, seq_len=L, batch=_int(opts, "batch", 8, 1), seed=_int(opts, "seed", 0),
                                     vocab=t.vocab, bos=t.bos)
    paths = plots.plot_induction(r, out) if out else []
    n = _int(opts, "top", 10, 1)
    return r.to_json(n), tables.induction_tables(r, n), paths


def _patch(t: Target, opts, out: Path | None):
    from interfere.analysis import patching, plots, tables

    comps = tuple(c for c in opts.get("components", "resid,heads,mlp").split(",") if c)
    if "clean" in opts or "corrupted" in opts:
        if not all(k in opts for k in ("clean", "corrupted", "answer")):
            raise ConfigError("patch takes clean=, corrupted= and answer= together (wrong= optional)")
        clean, corrupted = _prompt(opts["clean"]), _prompt(opts["corrupted"])
        answer, wrong = _token(t.model, opts["answer"]), _token(t.model, opts.get("wrong"))
    else:
        clean, corrupted, answer, wrong = _patch_pair(t, _default_seq_len(t, opts, 10), _int(opts, "seed", 0))
    r = patching.activation_patching(t.model, clean, corrupted, answer, wrong,
                                     position=_int(opts, "position", -1), components=comps)
    paths = plots.plot_patching(r, out) if out else []
    return r.to_json(), tables.patching_tables(r), paths


def _dla(t: Target, opts, out: Path | None):
    from interfere.analysis import dla, plots, tables

    prompt = _prompt(opts.get("prompt"))
    answer, wrong = _token(t.model, opts.get("answer")), _token(t.model, opts.get("wrong"))
    if prompt is None:
        prompt, _, a, _ = _patch_pair(t, _default_seq_len(t, opts, 10), _int(opts, "seed", 0))
        answer = a if answer is None else answer
    r = dla.direct_logit_attribution(t.model, prompt, answer, wrong, position=_int(opts, "position", -1))
    paths = plots.plot_dla(r, out) if out else []
    return r.to_json(), tables.dla_tables(r), paths


def _probe(t: Target, opts, out: Path | None):
    import torch

    from interfere.analysis import plots, probes, tables
    from interfere.analysis.induction import repeated_segments, seen_before

    target = opts.get("target", "seen_before")
    if target not in PROBE_TARGETS:
        raise ConfigError(f"target={target!r}; choose one of {', '.join(PROBE_TARGETS)}")
    seed = _int(opts, "seed", 0)
    T = _int(opts, "seq_len", min(64, _n_ctx(t.model)), 4)
    tokens, in_repeat = repeated_segments(_int(opts, "batch", 32, 4), T, t.vocab, t.bos, seed=seed)
    offset = 0 if t.bos is None else 1
    mask = torch.zeros_like(in_repeat)
    mask[:, offset:] = True
    y = {"seen_before": lambda: seen_before(tokens).long(), "in_repeat": lambda: in_repeat.long(),
         "position": lambda: torch.arange(T).float()[None].expand(len(tokens), -1),
         "noise": lambda: torch.randn(tokens.shape, generator=torch.Generator().manual_seed(seed + 7))}[target]()
    layers = None
    if opts.get("layers", "all") != "all":
        layers = [int(x) for x in opts["layers"].split(",") if x.strip()]
    from interfere.analysis.common import device_of

    curve = probes.probe_layers(t.model, tokens.to(device_of(t.model)), y, kind=PROBE_TARGETS[target],
                                hook=opts.get("hook", "resid_post"), layers=layers, mask=mask, seed=seed,
                                target_name=target)
    paths = plots.plot_probe(curve, out) if out else []
    return curve.to_json(), tables.probe_tables(curve), paths


RUNNERS = {"logit-lens": _logit_lens, "attention": _attention, "induction": _induction, "patch": _patch,
           "dla": _dla, "probe": _probe}


def run(args) -> int:
    """`args`: the words after `interpret` (a list of str), or the argparse namespace of cli.main."""
    if isinstance(args, (list, tuple)):
        tool, words, as_json = _split_argv(list(args))
    else:
        tool, words, as_json = args.tool, list(args.overrides), bool(args.json)
    opts = _parse(tool, words)
    from interfere.cli.common import print_json

    t0 = time.time()
    # With --json, anything the libraries print goes to stderr: stdout holds the JSON object only.
    with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
        target = _load(opts)
        _check_fits(tool, target, opts)
        load_seconds = time.time() - t0
        out = None
        if _bool(opts, "plots", True):
            out = Path(opts["out"]) if "out" in opts else target.plots_dir / tool.replace("-", "_")
        try:
            result, tables_, paths = RUNNERS[tool](target, opts, out)
        except ConfigError:
            raise
        except (ValueError, KeyError) as e:  # the analyses name a bad input (seq_len beyond n_ctx, ...) this way
            raise ConfigError(f"interpret {tool}: {first_line(e)}") from None
    record = {"tool": tool, "model": target.name, "kind": target.kind, "plots": [str(p) for p in paths],
              "load_seconds": round(load_seconds, 2), "seconds": round(time.time() - t0, 2), "result": result}
    if as_json:
        print_json(record)
    else:
        from interfere.analysis.tables import show

        show(tables_)
        for p in paths:
            print(f"plot   {p}")
    return 0
