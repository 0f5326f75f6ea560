"""The Game of Life hypotheses of the explorations seed, asked of a trained Life model (`interfere.load`).

    H1 attention implements a 3x3 stencil          attention(model, task)       attend.py
    H2 the residual stream linearly encodes each   probes(model, task)          probing.py
       cell's neighbour count and next state
    H3 heads read the rule bits and carry them     rules(model, task)           rulebits.py (+ attend.py)
    H4 early layers gather, later layers classify  layers(model, task)          roles.py
    F5 residual PCA, a head's contribution, the    embed, contrib, rule_vectors scatter.py, contrib.py, rulevec.py
       rule-bit embeddings
    the four verdicts, each with its numbers       hypotheses(model, task)      verdicts.py

Every number is read where it means what its name says: at the query slot t+1, whose cells see all of board t
and the rule; attention as the model's own softmax over the keys a query may see; probes scored on boards they
were not fitted on; heads tested by patching their output (hook_z); rule bits flipped in the token and the FiLM
input alike, against the cells the simulator says must change. `outputs.explore(tool, ...)` writes pictures and
summaries under a run's assets/explorations/ (what `interfere explore life <tool>` does).
"""

from interfere.explore.life.outputs import TOOLS, explore, output_dir
from interfere.explore.life.tools import (attention, contrib, embed, hypotheses, layers, probes, rule_usage,
                                          rule_vectors, rules)

__all__ = ["TOOLS", "attention", "contrib", "embed", "explore", "hypotheses", "layers", "output_dir", "probes",
           "rule_usage", "rule_vectors", "rules"]
