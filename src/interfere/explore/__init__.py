"""Explorations: questions asked of a model trained on one task, answered with interfere.analysis.

    life    the Game of Life hypotheses H1-H4 (attention stencil, linear world variables, rule bits, layer roles)
"""
