"""LifeTask: the Task protocol (interfere.tasks.base) for Life-like cellular automata."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F

from interfere.errors import ConfigError
from interfere.tasks.base import Batch, Layout, plain, step_generator
from interfere.tasks.life import rules as R
from interfere.model.modes import eval_mode, unwrap
from interfere.tasks.life import evaluate as E
from interfere.tasks.life.rollout import model_rollout, predict_next
from interfere.tasks.life.simulate import neighbours
from interfere.tasks.life.simulate import rollout as true_rollout
from interfere.tasks.life.stream import LifeStream
from interfere.tasks.life.tokens import ALIVE, DEAD, N_SEGMENTS, VOCAB_SIZE, SeqLayout

EVAL_CHUNK = 256  # boards per forward in evaluate
HELDOUT_SEED = 1  # the held-out rules' boards come from eval seed + 1, however they are asked for
_EVAL_DEFAULTS = {"samples": 1000, "seed": 1_000_003, "rollout_steps": 8, "rollout_samples": 200,
                  "rule_samples": 200}
_RENDER_DEFAULTS = {"boards": 4, "steps": 32}
_SS_DEFAULTS = {"max_prob": 0.0, "anneal_steps": 1000}


@dataclass
class LifeBatch(Batch):
    """A Batch that also remembers the scheduled-sampling numbers for log_metrics."""

    ss_prob: float = 0.0
    ss_fed: float | torch.Tensor = 0.0  # fraction of this batch's samples whose B_1.. came from the model


def _auto_device(device) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _resolve(key: str, spec) -> tuple[torch.Tensor, str]:
    try:
        return R.resolve(spec)
    except ValueError as e:
        raise ConfigError(f"{key}: {e} (or 'random' for the training rules, 'heldout', or a list of rules)") from e


class LifeTask:
    """Predict boards t+1..t+K of a Life-like automaton from its rule and board t."""

    vocab_size = VOCAB_SIZE
    n_segments = N_SEGMENTS
    headline = "cell_accuracy"  # the evaluate() key `interfere runs` shows
    token_analyses = False  # sequences follow the board layout: random token ids mean nothing to the model

    def __init__(self, *, name: str = "life", board=(16, 16), rules="B3/S23", density=(0.1, 0.9),
                 patterns: float = 0.0, horizons: int = 1, scheduled_sampling=None, seed: int = 0,
                 curriculum=(), eval=None, render=None, device="cpu"):  # noqa: A002 - `eval` is the config key
        board, density = plain(board), plain(density)
        if isinstance(board, int):
            board = [board, board]
        if len(board) != 2 or min(board) < 3:
            raise ConfigError(f"task.board must be [height, width] with sides >= 3, got {board}")
        if len(density) != 2 or not 0.0 <= density[0] <= density[1] <= 1.0:
            raise ConfigError(f"task.density must be [low, high] with 0 <= low <= high <= 1, got {density}")
        if not 0.0 <= patterns <= 1.0:
            raise ConfigError(f"task.patterns is a probability in [0, 1], got {patterns}")
        if int(horizons) < 1:
            raise ConfigError(f"task.horizons must be >= 1, got {horizons}")
        self.name = name
        self.height, self.width = int(board[0]), int(board[1])
        self.horizons = int(horizons)
        self.device = _auto_device(device)
        self.seed = int(seed)
        self.ss = {**_SS_DEFAULTS, **plain(scheduled_sampling or {})}
        self.eval_cfg = {**_EVAL_DEFAULTS, **plain(eval or {})}
        self.render_cfg = {**_RENDER_DEFAULTS, **plain(render or {})}

        self.rules_spec = plain(rules)
        rule_ids, self.rule_label = _resolve("task.rules", self.rules_spec)
        self.varies = len(rule_ids.unique()) > 1
        # The rules reported one by one: the named ones when the rules vary at random, else those given.
        listed = self.rule_label.split(",") if self.rule_label not in R.SETS else []
        self.rule_names = listed if listed else [R.format(R.parse(r)) for r in R.NAMED.values()]
        phases = self._phases(plain(curriculum) or [])
        self.train_ids = torch.cat([rule_ids, *(ids for _, ids in phases)]).unique()  # every rule training draws

        self.seq = SeqLayout(self.height, self.width, self.horizons)
        self.seq_len = self.seq.seq_len
        self.stream = LifeStream(self.height, self.width, rule_ids, (float(density[0]), float(density[1])),
                                 float(patterns), self.horizons, self.seed, self.device)
        self.curriculum = [(end, self.stream.with_rules(ids)) for end, ids in phases]

    @staticmethod
    def _phases(curriculum) -> list[tuple[int, torch.Tensor]]:
        """task.curriculum [{rules, steps}, ...] -> [(first step after the phase, rule ids)]."""
        phases, end = [], 0
        for i, phase in enumerate(curriculum):
            if not isinstance(phase, Mapping) or set(phase) != {"rules", "steps"} or int(phase["steps"]) < 1:
                raise ConfigError(f"task.curriculum[{i}] is {phase!r}; each phase is {{rules: <rules>, steps: <n >= 1>}}")
            end += int(phase["steps"])
            phases.append((end, _resolve(f"task.curriculum[{i}].rules", phase["rules"])[0]))
        return phases

    def stream_at(self, step: int) -> LifeStream:
        """The stream training step `step` draws from: its curriculum phase's, then task.rules'."""
        return next((stream for end, stream in self.curriculum if step < end), self.stream)

    # ----- layout ---------------------------------------------------------------------------------
    def layout(self) -> Layout:
        s = self.seq
        return Layout(positions=s.positions().to(self.device), segment_ids=s.segment_ids().to(self.device),
                      attn_mask=s.attention_mask().to(self.device), torus=(self.height, self.width))

    def allowed_inputs(self) -> torch.Tensor:
        return self.seq.allowed_inputs().to(self.device)

    # ----- training data --------------------------------------------------------------------------
    def ss_prob(self, step: int) -> float:
        """Scheduled sampling: the chance a sample is model-fed, ramping linearly to max_prob."""
        anneal = max(int(self.ss["anneal_steps"]), 1)
        return float(self.ss["max_prob"]) * min(1.0, step / anneal)

    def train_batch(self, step: int, batch_size: int, rank: int = 0, world_size: int = 1,
                    model: torch.nn.Module | None = None) -> LifeBatch:
        # The whole global batch is drawn on every rank, so the data never depends on the world size.
        n = batch_size * world_size
        g = step_generator(self.seed, step, self.device)
        rule_bits, truth = self.stream_at(step).draw(g, n)
        p = self.ss_prob(step)
        fed = torch.rand(n, generator=g, device=self.device) < p  # drawn even when p = 0: same stream either way
        mine = slice(rank * batch_size, (rank + 1) * batch_size)
        rule_bits, truth, fed = rule_bits[mine], truth[mine], fed[mine]
        in_boards = truth[:, :-1].clone()
        if model is not None and p > 0 and self.horizons > 1 and bool(fed.any()):
            # Only this rank's slice runs through the model: its B_k depend on nothing else.
            with eval_mode(unwrap(model)) as m:
                idx = fed.nonzero()[:, 0]
                for k in range(1, self.horizons):
                    in_boards[idx, k] = predict_next(m, in_boards[idx, k - 1], rule_bits[idx])
        return self._batch(rule_bits, in_boards, truth[:, 1:], ss_prob=p, ss_fed=fed.float().mean())

    def _batch(self, rule_bits, in_boards, target_boards, ss_prob=0.0, ss_fed=0.0) -> LifeBatch:
        inputs, targets, loss_mask = self.seq.encode(rule_bits, in_boards, target_boards)
        return LifeBatch(inputs, targets, loss_mask, {"cond": rule_bits.float()}, ss_prob=ss_prob, ss_fed=ss_fed)

    def log_metrics(self, logits: torch.Tensor, batch: Batch) -> dict[str, float]:
        """Loss and cell accuracy per horizon, plus what the stream looked like."""
        s = self.seq
        out = {}
        for k in range(1, self.horizons + 1):
            q = s.query(k)
            lg, tg = logits[:, q].float(), batch.targets[:, q]
            out[f"loss_t{k}"] = F.cross_entropy(lg.reshape(-1, lg.shape[-1]), tg.reshape(-1))
            out[f"acc_t{k}"] = (lg[..., DEAD:ALIVE + 1].argmax(-1) == tg).float().mean()
        b0, t1 = batch.inputs[:, s.board(0)], batch.targets[:, s.query(1)]
        out["stream_density_t0"] = b0.float().mean()
        out["stream_alive_t1"] = t1.float().mean()
        out["stream_unchanged"] = (b0 == t1).all(-1).float().mean()
        # The (state, live-neighbour count) histogram of board t, and the training accuracy of each entry.
        entry = (9 * b0 + neighbours(s.cells(batch.inputs, s.board(0))).flatten(1)).flatten()
        right = (logits[:, s.query(1), DEAD:ALIVE + 1].argmax(-1) == t1).flatten().float()
        cells = torch.bincount(entry, minlength=len(E.ENTRIES)).float()
        acc = torch.bincount(entry, weights=right, minlength=len(E.ENTRIES)) / cells  # nan: no such cell
        for i, name in enumerate(E.ENTRIES):
            out[f"stream_share_{name}"] = cells[i] / len(entry)
            out[f"acc_{name}"] = acc[i]
        out["ss_fed"] = torch.as_tensor(getattr(batch, "ss_fed", 0.0), dtype=torch.float32, device=logits.device)
        values = torch.stack([v.detach().float() for v in out.values()]).tolist()  # one device sync in all
        out = dict(zip(out, values))
        out["ss_prob"] = float(getattr(batch, "ss_prob", 0.0))
        return out

    # ----- evaluation -----------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, n_samples: int | None = None, seed: int | None = None,
                 rollout_steps: int | None = None, rules=None) -> dict[str, Any]:
        """Metrics on fresh boards (see interfere.tasks.life.evaluate), with the task's own rules or `rules`.

        `rules` takes what task.rules takes ("B36/S23", "heldout", "random", a list); the result says how
        much of it lies inside this task's training rules (`in_training`). Without it, a task whose rules
        vary also reports the held-out rules (`heldout`) and each named rule on its own (`per_rule`).
        """
        n = int(self.eval_cfg["samples"] if n_samples is None else n_samples)
        seed = int(self.eval_cfg["seed"] if seed is None else seed)
        steps = max(int(self.eval_cfg["rollout_steps"] if rollout_steps is None else rollout_steps), 1)
        with eval_mode(unwrap(model)) as m:
            if rules is not None:
                ids, label = _resolve("rules", plain(rules))
                return self._evaluate(m, ids, label, n, seed + HELDOUT_SEED if label == "heldout" else seed, steps)
            out = self._evaluate(m, self.stream.rule_ids, self.rule_label, n, seed, steps)
            if self.varies:
                held = R.split_ids("heldout")
                out["heldout"] = self._evaluate(m, held, "heldout", n, seed + HELDOUT_SEED, steps)
                out["per_rule"] = {}
                for i, name in enumerate(self.rule_names):  # each rule on its own boards, one step
                    r = self._evaluate(m, R.ids(R.parse(name))[None], name, int(self.eval_cfg["rule_samples"]),
                                       seed + HELDOUT_SEED + 1 + i, 0)
                    out["per_rule"][name] = {k: r[k] for k in ("cell_accuracy", "board_accuracy", "in_training")}
        return out

    def _evaluate(self, model, rule_ids: torch.Tensor, label: str, n_samples: int, seed: int,
                  steps: int) -> dict[str, Any]:
        stream = self.stream.with_rules(rule_ids)
        n_rollout = int(self.eval_cfg["rollout_samples"])
        total = None
        for chunk, start in enumerate(range(0, n_samples, EVAL_CHUNK)):
            n = min(EVAL_CHUNK, n_samples - start)
            rule_bits, truth = stream.sample(chunk, n, seed=seed)
            total = E.add(total, E.tally(model, truth[:, 0], rule_bits, steps, max(0, min(n, n_rollout - start))))
        return {"rule": label, **E.summarize(total, self.height, self.width), **self._in_training(rule_ids)}

    def _in_training(self, rule_ids: torch.Tensor) -> dict[str, Any]:
        """One rule: in_training (is it one training draws from?); a set: in_training_share."""
        inside = torch.isin(rule_ids.to(self.train_ids.device), self.train_ids)
        if len(rule_ids) == 1:
            return {"in_training": bool(inside[0])}
        return {"in_training_share": inside.float().mean().item()}

    # ----- rendering ------------------------------------------------------------------------------
    def render_rollouts(self, model: torch.nn.Module, n_boards: int | None = None, steps: int | None = None):
        """(model rollouts, true rollouts), each [N, steps+1, H, W], for a fixed set of boards.

        The boards come from a fixed seed, so successive videos of a run show the same boards; when the rules
        vary they cycle through the named rules (a random rule is rarely interesting to watch).
        """
        n = int(n_boards or self.render_cfg["boards"])
        steps = int(steps or self.render_cfg["steps"])
        render_seed = int(self.eval_cfg["seed"]) + 101
        rule_bits, truth = self.stream.sample(0, n, seed=render_seed)
        if self.varies:
            rule_bits = torch.stack([R.parse(self.rule_names[i % len(self.rule_names)]) for i in range(n)])
            rule_bits = rule_bits.to(self.device)
        boards = truth[:, 0]
        with eval_mode(unwrap(model)) as m:
            pred = model_rollout(m, boards, rule_bits, steps)
        return pred, true_rollout(boards, rule_bits, steps)

    def artifacts(self, model: torch.nn.Module, step: int, out_dir: Path) -> list[Path]:
        from interfere.tasks.life import render

        pred, true = self.render_rollouts(model)
        frames = render.frames(pred, true)
        base = Path(out_dir) / "rollouts" / f"step_{step:06d}"
        return [render.write_video(frames, base.with_suffix(".mp4")), render.write_gif(frames, base.with_suffix(".gif"))]
