"""Model-agnostic interpretability: the tools run on any model with TransformerLens' hook names and
`run_with_cache` (a HookedGPT trained here, or a pretrained model through a TransformerBridge).

    lens.logit_lens                   top-k of each layer's residual stream
    attention.analyze_attention       head scores, classes, distance histograms
    induction.induction_analysis      induction / prefix-matching scores, loss on each repeat
    patching.activation_patching      recovery per residual position, head and MLP
    dla.direct_logit_attribution      direct logit attribution per head and layer
    probes.probe_layers               ridge / logistic probes per layer, held out
    plots, tables                     PNGs and terminal tables of each result

Nothing here imports a task (DESIGN.md's layering); the modules import torch and transformer_lens on use.
"""
