"""PNGs of every tool (interfere.analysis.plots), written atomically, and the terminal tables."""

import io

import torch

from model_helpers import tiny
from toy_task import one_thread  # noqa: F401 (autouse fixture)

from interfere.analysis import plots, tables
from interfere.analysis.attention import analyze_attention
from interfere.analysis.dla import direct_logit_attribution
from interfere.analysis.induction import induction_analysis
from interfere.analysis.lens import logit_lens
from interfere.analysis.patching import activation_patching
from interfere.analysis.probes import probe_layers

PNG = b"\x89PNG\r\n\x1a\n"


def test_every_tool_draws_and_tabulates(tmp_path):
    model = tiny()
    tokens = torch.randint(0, 20, (2, 12))
    corrupted = tokens[:1].clone()
    corrupted[0, 3] = (corrupted[0, 3] + 1) % 20
    results = [
        (logit_lens(model, tokens[:1], positions="2,5"), plots.plot_lens, tables.lens_tables),
        (analyze_attention(model, tokens), plots.plot_attention, tables.attention_tables),
        (induction_analysis(model, seq_len=8, batch=2, bos=None), plots.plot_induction, tables.induction_tables),
        (activation_patching(model, tokens[:1], corrupted, 1, 2), plots.plot_patching, tables.patching_tables),
        (direct_logit_attribution(model, tokens[:1], 1, 2), plots.plot_dla, tables.dla_tables),
        (probe_layers(model, tokens, torch.randn(2, 12), target_name="noise"), plots.plot_probe, tables.probe_tables),
    ]
    out = io.StringIO()
    for result, draw, tabulate in results:
        paths = draw(result, tmp_path / type(result).__name__)
        assert paths and all(p.read_bytes()[:8] == PNG for p in paths)
        tables.show(tabulate(result), file=out)
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file() and p.name.startswith(".")]
    assert not leftovers  # temporary files were renamed into place
    text = out.getvalue()
    assert "logit lens at position 2" in text and "top 15 components by recovery" in text and "L1H3" in text


def test_heatmap_overwrites_atomically(tmp_path):
    path = tmp_path / "h.png"
    plots.heatmap(torch.rand(3, 4), path, "first")
    first = path.read_bytes()
    plots.heatmap(torch.rand(3, 4) - 0.5, path, "second", center=True)
    assert path.read_bytes() != first and path.read_bytes()[:8] == PNG
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.png"]
